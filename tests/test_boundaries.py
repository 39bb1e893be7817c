"""The import contracts (pyproject.toml, run by `make check`) catch a new cross-import:
run on a copy of the tree with one import added, `lint-imports` fails and names it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO

PACKAGES = ("embedpipe", "embedding", "gateway", "ingestion", "tests", "bench")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the tree under `root`, with the project's contracts."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the Python sources and pyproject.toml."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(REPO / "pyproject.toml", root)
    for package in PACKAGES:
        shutil.copytree(
            REPO / package,
            root / package,
            ignore=shutil.ignore_patterns("node_modules", "__pycache__", "*.js", "*.json"),
        )
    return root


@pytest.mark.parametrize(
    ("module", "added", "contract"),
    [
        ("gateway/__init__.py", "import embedding", "The services never import each other"),
        ("ingestion/store.py", "import gateway.app", "The services never import each other"),
        ("embedpipe/logs.py", "import ingestion", "Shared code imports no service"),
        ("tests/test_streams.py", "import bench.soak", "Tests import no benchmark"),
    ],
)
def test_a_new_cross_import_breaks_a_contract(
    tree: Path, module: str, added: str, contract: str
) -> None:
    path = tree / module
    original = path.read_text()
    path.write_text(original + f"\n{added}\n")
    try:
        result = lint_imports(tree)
    finally:
        path.write_text(original)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout
    importer = module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    assert f"{importer} -> {added.rsplit(maxsplit=1)[-1]}" in result.stdout


def test_the_tree_as_committed_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
