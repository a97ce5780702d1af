"""The suite's own scheduling: tests that share a costly session fixture (one OpenClaw gateway, ~20 s of CPU to
start) run on one pytest-xdist worker, as tests/conftest.py groups them. pytest 9.2 with pytest-xdist 3.8 silently
spread such a group over both workers (each started its own gateway), so the pinned pair is checked here, on a
small suite of its own run the way `make test` runs ours."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CONFTEST = '''
import pytest

@pytest.fixture(scope="session")
def _costly():
    return "made once"

@pytest.fixture
def costly(_costly):
    return _costly

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "_costly" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("costly"))
'''

MODULE = '''
import os
import time

def _ran(name):
    with open(os.path.join(os.environ["RAN_DIR"], name), "w") as ran:
        ran.write(os.environ["PYTEST_XDIST_WORKER"])

def test_{m}_grouped_1(costly):
    time.sleep(0.1); _ran("{m}1")

def test_{m}_grouped_2(costly):
    time.sleep(0.1); _ran("{m}2")

def test_{m}_free():
    time.sleep(0.1); _ran("{m}3")
'''


def test_a_group_of_tests_runs_on_one_worker(tmp_path: Path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(CONFTEST)
    for m in "abcd":
        (suite / f"test_{m}.py").write_text(MODULE.replace("{m}", m))
    ran = tmp_path / "ran"
    ran.mkdir()
    finished = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                               "--dist", "loadgroup", str(suite)], cwd=suite, capture_output=True, text=True,
                              timeout=120, env={**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
                                                "RAN_DIR": str(ran)})
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    workers = {path.name: path.read_text() for path in ran.iterdir()}
    assert len(workers) == 12, workers
    grouped = {workers[f"{m}{n}"] for m in "abcd" for n in (1, 2)}
    assert len(grouped) == 1, f"the group ran on {sorted(grouped)}: {workers}"
