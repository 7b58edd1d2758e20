"""Shared fixtures: projects copied into a temporary folder, so no test ever writes into the repo.

- `starter_project`: the `segsql init` template (5 customers, 6 orders; members computable by hand);
- `mini_project`: tests/fixtures/mini, the execution-test fixture (10 customers, 20 orders, 10 events);
- `example_project`: the repo's example project (segsql.yml, segments/, macros/, data/ at the root).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner, Result

from segsql.cache import CACHE_FOLDER
from segsql.cli import app

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MINI_PROJECT = FIXTURES / "mini"
STARTER_TEMPLATE = Path(str(resources.files("segsql") / "templates" / "init"))
EXAMPLE_PARTS = ("segsql.yml", "segments", "macros", "data")
# Files a run leaves behind; never copied, so every test starts from the definitions alone.
_IGNORED = shutil.ignore_patterns("target", "*.duckdb", "*.duckdb.wal", "__pycache__", ".*")


def load_bench(name: str) -> ModuleType:
    """bench/<name>.py as a module (the benchmarks are scripts, not a package), loaded once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def copy_project(source: Path, destination: Path) -> Path:
    """Copy a project folder (definitions, macros, data; no build output) to `destination`."""
    shutil.copytree(source, destination, ignore=_IGNORED)
    return destination


def copy_example(destination: Path) -> Path:
    """The example project lives at the repo root next to other things: copy only its parts."""
    destination.mkdir(parents=True)
    for part in EXAMPLE_PARTS:
        source = REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(source, destination / part, ignore=_IGNORED)
        elif source.is_file():
            shutil.copy2(source, destination / part)
    return destination


def example_missing_reason() -> str | None:
    """Why the example project cannot be tested yet (it is being written), or None."""
    segments = REPO_ROOT / "segments"
    if not (REPO_ROOT / "segsql.yml").is_file():
        return "the example project has no segsql.yml at the repo root yet"
    if not segments.is_dir() or not any(segments.rglob("*.y*ml")):
        return "the example project's segments/ is still empty (being written)"
    return None


@pytest.fixture
def starter_project(tmp_path: Path) -> Path:
    return copy_project(STARTER_TEMPLATE, tmp_path / "starter")


@pytest.fixture
def mini_project(tmp_path: Path) -> Path:
    return copy_project(MINI_PROJECT, tmp_path / "mini")


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    reason = example_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    return copy_example(tmp_path / "example")


Invoke = Callable[..., Result]


@pytest.fixture
def segsql_cli() -> Invoke:
    """`segsql_cli(project, "compile", "--target", "postgres")`: the real CLI, in process."""
    runner = CliRunner()

    def invoke(project: Path, *args: str) -> Result:
        return runner.invoke(app, ["--project-dir", str(project), *args])

    return invoke


def read_tree(folder: Path, with_cache: bool = True) -> dict[str, bytes]:
    """Relative path -> bytes of every file under `folder` (without the compile cache, only the
    compiled output: the cache is local scratch, neither committed nor compared)."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and (with_cache or CACHE_FOLDER not in path.relative_to(folder).parts)
    }
