"""Environment files: one model of a deployment, composed of one settings model per section
(`fleetkit.core.settings`), read the same way by `infra`, the workers, the autoscaler, the
bootstrap and the sandbox.

An invalid file is a `ConfigError` of one line per problem, each naming the file, the key and
what is wrong; every problem is shown, none hidden behind a count.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from fleetkit.core.errors import ConfigError
from fleetkit.core.settings import (
    AMI_PATTERN,
    INSTANCE_TYPE_PATTERN,
    NAME_PATTERN,
    ArtifactSettings,
    AutoscalerInstanceSettings,
    NetworkSettings,
    PoolSettings,
    RedisSettings,
)

__all__ = [
    "ENVIRONMENTS_DIR",
    "REDIS_URL_VARIABLE",
    "Environment",
    "aws_regions",
    "environment_path",
    "load_environment",
]

# The shipped files are `infra`'s (it deploys them); found by path, so that reading an
# environment imports nothing of `infra`.
ENVIRONMENTS_DIR = Path(__file__).resolve().parents[1] / "infra" / "environments"
REDIS_URL_VARIABLE = "FLEETKIT_REDIS_URL"
_RESERVED_POOL_NAMES = {"autoscaler"}
_NAME_RULE = "1 to 24 lowercase letters, digits or '-', starting with a letter"
# What a pattern asks for, in words (a regular expression is no help in an error line).
_PATTERN_WORDS = {
    NAME_PATTERN: _NAME_RULE,
    AMI_PATTERN: "an AMI id (ami-0123456789abcdef0) or an SSM parameter path (/aws/service/…)",
    INSTANCE_TYPE_PATTERN: "an EC2 instance type such as m7i.large",
}


_NAME_FROM_FILE = "name_from_file"


def _usable_name(value: str) -> str:
    """A name like `value` that follows the rule: unknown_x → unknown-x."""
    name = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    if not name[:1].isalpha():
        name = f"env-{name}"
    return name[:24].rstrip("-")


@cache
def aws_regions() -> frozenset[str]:
    """Every region of every AWS partition the installed botocore knows (offline)."""
    from botocore.loaders import create_loader  # only where a region is checked

    endpoints = create_loader().load_data("endpoints")
    return frozenset(r for partition in endpoints["partitions"] for r in partition["regions"])


class Environment(BaseModel):
    """Everything one deployment of fleetkit needs; `source` is the file it came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    region: str
    stack_name: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
    termination_protection: bool = False
    # Instance types to accept although the installed botocore does not list them yet.
    extra_instance_types: list[Annotated[str, Field(pattern=INSTANCE_TYPE_PATTERN)]] = []
    redis: RedisSettings = RedisSettings()
    network: NetworkSettings = NetworkSettings()
    artifacts: ArtifactSettings = ArtifactSettings()
    autoscaler: AutoscalerInstanceSettings = AutoscalerInstanceSettings()
    pools: dict[str, PoolSettings] = Field(min_length=1)
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str, info: ValidationInfo) -> str:
        if not re.match(NAME_PATTERN, value):
            usable = _usable_name(value)
            # A file without `name = …` is named after itself: say so, or "name:" points at a
            # key that is not in the file.
            file_name = (info.context or {}).get(_NAME_FROM_FILE)
            origin = f" (taken from the file name {file_name})" if file_name else ""
            fix = (
                f'rename the file (to {usable}.toml, say) or set name = "{usable}" in it'
                if file_name
                else f'set name = "{usable}", say'
            )
            raise ValueError(
                f"environment name {value!r}{origin} must be {_NAME_RULE} (it becomes the stack "
                f"name, tags and Redis keys): {fix}"
            )
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value not in aws_regions():
            near = difflib.get_close_matches(value, sorted(aws_regions()), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"{value!r} is not an AWS region{hint}")
        return value

    @field_validator("pools")
    @classmethod
    def _pool_names(cls, value: dict[str, PoolSettings]) -> dict[str, PoolSettings]:
        for name in value:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"pool name {name!r} must be {_NAME_RULE}")
            if name in _RESERVED_POOL_NAMES:
                raise ValueError(f"pool name {name!r} is reserved")
        return value

    @property
    def stack(self) -> str:
        return self.stack_name or f"fleetkit-{self.name}"

    def redis_url(self, environ: dict[str, str] | None = None) -> str | None:
        """The Redis URL every command uses: FLEETKIT_REDIS_URL, else the file's url.

        Returns None when the file names an SSM parameter instead
        (`fleetkit.core.aws.resolve_redis_url` reads it).
        """
        env = os.environ if environ is None else environ
        return env.get(REDIS_URL_VARIABLE) or self.redis.url


def environment_path(ref: str) -> Path:
    """`staging` → the shipped file; anything ending in .toml or holding a slash → that path."""
    if ref.endswith(".toml") or os.sep in ref or "/" in ref:
        return Path(ref)
    if not re.match(NAME_PATTERN, ref):
        raise ConfigError(f"--env {ref!r}: not an environment name or a path to a .toml file")
    return ENVIRONMENTS_DIR / f"{ref}.toml"


def load_environment(ref: str) -> Environment:
    """Load and validate an environment; every problem is a line of one ConfigError."""
    path = environment_path(ref)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in ENVIRONMENTS_DIR.glob("*.toml")))
        raise ConfigError(f"{path}: no such environment file (shipped: {known})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    context = {} if "name" in raw else {_NAME_FROM_FILE: path.name}
    raw.setdefault("name", path.stem)
    try:
        return Environment.model_validate({**raw, "source": path}, context=context)
    except ValidationError as exc:
        raise ConfigError("\n".join(error_lines(path, exc))) from None


def error_lines(path: Path | str, exc: ValidationError) -> list[str]:
    """One line per problem: `<file>: <key>: <what is wrong> (got <value>)`."""
    return [f"{path}: {_line(error)}" for error in exc.errors(include_url=False)]


def _line(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        message = f"must be {_PATTERN_WORDS.get(pattern, f'text matching {pattern}')}"
    # Our own value errors name the value already; a nested section's input is the whole table.
    named = error["type"] in ("missing", "value_error") or isinstance(error["input"], dict)
    if not named:
        message += f" (got {error['input']!r})"
    return f"{key}: {message}"
