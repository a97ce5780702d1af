"""The root dies loudly in a real `python supervisor.py`: a failure of the root Supervisor stops the tree
and the program exits non-zero, with the reason on stderr and in the log."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from config import PROJECT_ROOT
from surfaces.repl import socket_path

from .conftest import wait_until

pytestmark = pytest.mark.slow   # runs supervisor.py as a process


def test_a_message_the_root_does_not_understand_told_from_the_repl_stops_the_program_with_exit_1(write_config,
                                                                                                  omni_home):
    out, err = omni_home / "stdout.log", omni_home / "stderr.log"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "supervisor.py", "--config", str(write_config())], cwd=PROJECT_ROOT,
                                   stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        wait_until(lambda: (omni_home / "gateway.url").exists() and socket_path(omni_home).exists()
                   or process.poll() is not None, 60, "the supervisor to serve its gateway and REPL")
        assert process.poll() is None, err.read_text()

        operator = subprocess.run([sys.executable, "supervisor.py", "repl"], cwd=PROJECT_ROOT, capture_output=True,
                                  text=True, timeout=60, input='tell("supervisor", m.Reconcile())\n')
        assert "told supervisor: Reconcile" in operator.stdout

        returncode = process.wait(timeout=60)
        reason = "the supervisor itself failed: TypeError: supervisor does not understand Reconcile"
        assert returncode == 1
        assert f"supervisor escalated, the tree is stopped: {reason}" in err.read_text()
        assert f"stopped: {reason}" in " ".join(out.read_text().split())   # Rich wraps at 80 columns
        assert "CRITICAL runtime.supervisor" in (log := (omni_home / "logs" / "supervisor.log").read_text())
        assert f"escalating: {reason}" in log
        assert "Traceback" not in err.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        try:   # and whatever MCP server children it left behind
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
