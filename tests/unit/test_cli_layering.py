"""The event path reads one way: `streams` never imports `load`; load's commands plug in."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from load.worker_process import REPO

STREAMS = REPO / "streams"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_under_streams_imports_load() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(
            n for n in names if n == "load" or n.startswith("load.")
        )
        for path in sorted(STREAMS.rglob("*.py"))
        if (names := imported_modules(path))
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}
    assert len(list(STREAMS.rglob("*.py"))) > 20  # the scan saw the package


def test_help_lists_the_load_commands_from_the_entry_point_group() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for name in ("demo", "bench", "simulate", "eta-eval", "sink", "worker", "query", "fold"):
        assert f"\n    {name} " in done.stdout or f"\n    {name}\n" in done.stdout, done.stdout


def test_a_built_in_command_does_not_import_the_plugins() -> None:
    code = (
        "import sys; from streams.cli import build_parser; build_parser(only='fold');"
        " print(sorted(m for m in sys.modules if m.startswith(('load', 'faust', 'chdb'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
