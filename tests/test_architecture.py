"""The shape the packages keep: one namespace, dependencies that point at the core only, and
instances that load only their runtime.

The import graph is read from the source (every `import`, at any depth), so a forbidden import
fails here before it reaches an instance. The same checks run on a small tree of broken modules,
to show they can fail.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("core", "infra", "worker", "autoscaler", "bootstrap", "cookbooks", "sandbox")
# What each part may import of the others (besides itself).
ALLOWED = {
    "core": set(),
    "infra": {"core"},
    "worker": {"core"},
    "autoscaler": {"core"},
    "bootstrap": {"core"},
    "cookbooks": {"core"},
    # The sandbox stands in for EC2 around a whole local fleet: it may drive every part.
    "sandbox": {"core", "infra", "worker", "autoscaler"},
}
# The deploy side: never on an instance (and never loaded by the instance CLIs).
DEPLOY_ONLY = {"troposphere", "awacs", "cfnlint", "jinja2", "fabric"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted
    runtime: bool  # False inside `if TYPE_CHECKING:`
    maybe: bool = False  # `from a import b`: b may be a module (a.b) or a name in a


@dataclass(frozen=True)
class _Where:
    module: str  # the module being read, dotted
    package: str  # the package its relative imports start from


def _where(root: Path, path: Path) -> _Where:
    parts = ["fleetkit", *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
        return _Where(".".join(parts), ".".join(parts))
    return _Where(".".join(parts), ".".join(parts[:-1]))


def imports_of(root: Path) -> Iterator[Import]:
    """Every import in every module of the parts under `root`."""
    for part in PARTS:
        for path in sorted((root / part).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            yield from _walk(tree, _where(root, path), runtime=True)


def _walk(node: ast.AST, where: _Where, *, runtime: bool) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for inner in child.body:
                yield from _walk_one(inner, where, runtime=False)
            for inner in child.orelse:
                yield from _walk_one(inner, where, runtime=runtime)
            continue
        yield from _walk_one(child, where, runtime=runtime)


def _walk_one(node: ast.AST, where: _Where, *, runtime: bool) -> Iterator[Import]:
    module = where.module
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield Import(module, alias.name, runtime)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # `from ..core import errors`: resolved as Python would
            package = where.package.split(".")[: len(where.package.split(".")) - node.level + 1]
            base = ".".join(filter(None, [*package, base]))
        yield Import(module, base, runtime)
        for alias in node.names:  # `from fleetkit.core import errors` imports a module too
            yield Import(module, f"{base}.{alias.name}", runtime, maybe=True)
    yield from _walk(node, where, runtime=runtime)


def _part(dotted: str) -> str | None:
    pieces = dotted.split(".")
    return pieces[1] if pieces[0] == "fleetkit" and len(pieces) > 1 else None


def direction_violations(root: Path) -> list[str]:
    """Imports that break the one namespace or point anywhere but at the core."""
    found = []
    for imp in imports_of(root):
        # `from a.b import c`: c may be a name, so only `from fleetkit import <part>` counts.
        if imp.maybe and imp.target.count(".") != 1:
            continue
        top = imp.target.split(".")[0]
        if top in PARTS:
            found.append(f"{imp.module} imports {imp.target}: only fleetkit.{top} exists")
        source, target = _part(imp.module), _part(imp.target)
        crossing = source in ALLOWED and target in PARTS and target != source
        if crossing and target not in ALLOWED[source]:
            found.append(f"{imp.module} imports {imp.target}: {source} may not use {target}")
    return sorted(set(found))


def loaded_by(root: Path, start: str) -> set[str]:
    """Every module `import start` can load at run time: fleetkit's own, followed through
    every import at any depth (a function's lazy import included), plus the external
    top-level packages they name."""
    graph: dict[str, set[str]] = {}
    for imp in imports_of(root):
        if imp.runtime:
            graph.setdefault(imp.module, set()).add(imp.target)
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parents = module.split(".")
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        todo += [".".join(parents[:i]) for i in range(2, len(parents))]
        for target in graph.get(module, ()):
            todo.append(target if target.startswith("fleetkit.") else target.split(".")[0])
    return seen


def test_packages_depend_on_the_core_and_never_on_each_other() -> None:
    assert direction_violations(ROOT) == []


@pytest.mark.parametrize(
    "cli", ["fleetkit.worker.cli", "fleetkit.autoscaler.cli", "fleetkit.worker.process"]
)
def test_instance_programs_load_nothing_of_the_deploy_side(cli: str) -> None:
    loaded = loaded_by(ROOT, cli)
    assert loaded & DEPLOY_ONLY == set()
    assert not any(m.startswith("fleetkit.infra") for m in loaded)


def test_the_forking_worker_loads_no_pydantic() -> None:
    # Every job forks from this process: ~10 MB of pydantic would be copied into each.
    assert "pydantic" not in loaded_by(ROOT, "fleetkit.worker.process")


def test_the_forking_worker_loads_no_terminal_ui() -> None:
    # It reports Redis outages through fleetkit.core.waiting, whose spinner is the CLI's alone.
    assert "rich" not in loaded_by(ROOT, "fleetkit.worker.process")


def really_loaded(*modules: str) -> set[str]:
    """The top-level packages a real interpreter has loaded after importing `modules`."""
    probe = (
        f"import sys, {', '.join(modules)}; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(ran.stdout.split())


def test_the_instance_programs_really_load_nothing_of_the_deploy_side() -> None:
    """The same, in a real interpreter: what `import` actually loaded."""
    assert really_loaded("fleetkit.worker.cli", "fleetkit.autoscaler.cli") & DEPLOY_ONLY == set()
    assert really_loaded("fleetkit.worker.process") & {"pydantic", "rich"} == set()


def _tree(root: Path, files: dict[str, str]) -> Path:
    for part in PARTS:
        (root / part).mkdir(parents=True, exist_ok=True)
        (root / part / "__init__.py").touch()
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_the_checks_catch_what_they_forbid(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "core/shared.py": "from fleetkit.worker import process\n",
            "worker/cli.py": (
                "def run():\n    from fleetkit.autoscaler.cli import main\n"
                "    import fleetkit.worker.heavy\n"
            ),
            "worker/heavy.py": "import troposphere\n",
            "worker/relative.py": "from ..infra import cli\n",
            "infra/rooted.py": "from fleetkit import autoscaler\n",
            "autoscaler/cli.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    import cfnlint\n"
                "import worker.checkpoint\n"
            ),
        },
    )
    assert direction_violations(root) == [
        "fleetkit.autoscaler.cli imports worker.checkpoint: only fleetkit.worker exists",
        "fleetkit.core.shared imports fleetkit.worker: core may not use worker",
        "fleetkit.infra.rooted imports fleetkit.autoscaler: infra may not use autoscaler",
        "fleetkit.worker.cli imports fleetkit.autoscaler.cli: worker may not use autoscaler",
        "fleetkit.worker.relative imports fleetkit.infra: worker may not use infra",
    ]
    loaded = loaded_by(root, "fleetkit.worker.cli")
    assert "troposphere" in loaded  # through a function's lazy import
    assert "cfnlint" not in loaded  # a type-only import loads nothing


def test_the_wheel_holds_fleetkit_and_nothing_else(tmp_path: Path) -> None:
    # Built from a copy (links kept as links), so the build leaves nothing in the repository.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--quiet", "--wheel-dir", str(wheels), str(source),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("fleetkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "fleetkit",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    # The linked folders are in it as files, with the shipped environments.
    for inside in (
        "fleetkit/core/schema.py",
        "fleetkit/worker/checkpoint.py",
        "fleetkit/sandbox/imds.py",
        "fleetkit/infra/environments/staging.toml",
        "fleetkit/py.typed",
    ):
        assert inside in names
