"""`projections` is pure domain logic: no broker, database, stream wiring or clock."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import projections

BLOCKED = ["kafka", "aiokafka", "faust", "clickhouse_connect", "chdb", "streams", "mode"]
SOURCE_DIR = Path(projections.__file__).parent


def test_projections_import_with_io_packages_blocked():
    modules = sorted(f"projections.{m.name}" for m in pkgutil.iter_modules([str(SOURCE_DIR)]))
    assert "projections.fold" in modules
    script = (
        "import sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None  # importing it now raises ImportError\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_blocking_really_blocks():
    script = "import sys\nsys.modules['aiokafka'] = None\nimport aiokafka\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0 and "import of aiokafka halted" in done.stderr


def test_projections_read_no_clock():
    clock = re.compile(r"datetime\.now|datetime\.utcnow|time\.time\(|date\.today|time\.monotonic")
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(SOURCE_DIR.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if clock.search(line)
    ]
    assert offenders == []
