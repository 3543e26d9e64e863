"""What a `Modify` changes, property by property, old → new.

AWS's change sets say it in each change's Details (values included when asked with
IncludePropertyValues); moto's carry no details. There the deployed template (GetTemplate) is
compared with the new one: `template_changes`, a pure function of the two documents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

__all__ = ["PropertyChange", "detail_changes", "property_changes", "show", "template_changes"]

_SHOWN_CHARACTERS = 60


@dataclass(frozen=True)
class PropertyChange:
    path: str  # MaxSize, MixedInstancesPolicy.LaunchTemplate.Overrides
    before: Any  # None: not set before
    after: Any  # None: not set any more


def template_changes(
    deployed: Mapping[str, Any], new: Mapping[str, Any], logical_id: str
) -> list[PropertyChange]:
    """The properties of resource `logical_id` that differ between two templates."""
    return property_changes(_properties(deployed, logical_id), _properties(new, logical_id))


def property_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = ""
) -> list[PropertyChange]:
    """Changed properties, nested blocks followed down to the values that differ; lists and
    intrinsic functions ({"Ref": …}, {"Fn::GetAtt": …}) are values, compared whole."""
    changes: list[PropertyChange] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if _same(old, new):
            continue
        path = f"{prefix}{key}"
        if _is_block(old) and _is_block(new):
            changes += property_changes(old, new, f"{path}.")
        else:
            changes.append(PropertyChange(path, old, new))
    return changes


def detail_changes(details: list[dict[str, Any]]) -> list[PropertyChange]:
    """The property changes a change set's Details carry with their values, once per property
    (AWS lists a property again for each cause: a direct edit, a parameter, another resource)."""
    found: dict[str, PropertyChange] = {}
    for detail in details:
        target = detail.get("Target", {})
        if target.get("Attribute") != "Properties":
            continue
        if "BeforeValue" not in target and "AfterValue" not in target:
            continue  # a name without values: the template comparison says more
        raw = str(target.get("Path") or target.get("Name") or "?")
        path = raw.removeprefix("/Properties/").strip("/").replace("/", ".")
        found.setdefault(
            path, PropertyChange(path, target.get("BeforeValue"), target.get("AfterValue"))
        )
    return list(found.values())


def show(value: Any, *, limit: int = _SHOWN_CHARACTERS) -> str:
    """A value on one short line: scalars as they are, blocks as compact JSON, cut at `limit`."""
    if value is None:
        text = "(none)"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _properties(template: Mapping[str, Any], logical_id: str) -> Mapping[str, Any]:
    resource = template.get("Resources", {}).get(logical_id, {})
    properties = resource.get("Properties", {}) if isinstance(resource, dict) else {}
    return properties if isinstance(properties, dict) else {}


def _is_block(value: Any) -> TypeGuard[dict[str, Any]]:
    """A nested property block, not an intrinsic function."""
    return isinstance(value, dict) and not any(k == "Ref" or k.startswith("Fn::") for k in value)


def _same(old: Any, new: Any) -> bool:
    # CloudFormation hands every scalar to a resource as text: 20 and "20", true and "true"
    # are one value, and a template rewritten with the other spelling changes nothing.
    return old == new or (_scalar(old) and _scalar(new) and _text(old) == _text(new))


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
