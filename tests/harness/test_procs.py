"""harness.procs.stop_group: a graceful stop lets a process act on SIGTERM; a stop that is not
graceful kills at once; either way nothing of the process is left, not even a child that left
its process group (as a Celery worker's pool child does)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from harness.procs import spawn, stop_group, wait_for

# A leader that starts a child in a session of its own (outside the leader's group), writes
# the child's pid, and on SIGTERM writes "graceful" and exits after ``delay`` seconds.
LEADER = """
import signal, subprocess, sys, time
from pathlib import Path
here, delay = Path(sys.argv[1]), float(sys.argv[2])
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)
def on_term(*_):
    time.sleep(delay)
    (here / "graceful").write_text("yes")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
(here / "child").write_text(str(child.pid))
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Running (a zombie left for init to reap counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("graceful", [True, False])
def test_stop_group_leaves_nothing_and_is_graceful_only_when_asked(
    tmp_path: Path, graceful: bool
) -> None:
    delay = 1.0
    proc = spawn([sys.executable, "-c", LEADER, str(tmp_path), str(delay)], tmp_path / "log")
    written = tmp_path / "child"
    child = int(wait_for(lambda: written.exists() and written.read_text(), 30, "the child"))
    assert alive(child) and os.getpgid(child) != os.getpgid(proc.pid)
    began = time.monotonic()
    stop_group(proc, graceful=graceful)
    took = time.monotonic() - began
    assert proc.poll() is not None
    wait_for(lambda: not alive(child), 5, "the child that left the group to be gone")
    assert (tmp_path / "graceful").exists() == graceful, (tmp_path / "log").read_text()
    if graceful:
        assert took >= delay  # it waited for the process to finish its SIGTERM handler
