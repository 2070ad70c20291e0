"""CPU seconds of processes, read from ``/proc`` (and, for a process we reap, ``wait4``).

Why CPU seconds and not wall time: the development machine has two cores shared with other
work, so wall time measures the neighbours as much as the code. A process's CPU time is what
it cost, whatever else ran beside it, and a cost per comment is what sizing a fleet needs.
"""

from __future__ import annotations

import os
import resource
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.procs import descendants

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU of ``pid`` (and of its reaped children): 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the ")": state is field 0, so utime/stime/cutime/cstime are fields 11..14.
    own = int(fields[11]) + int(fields[12])
    reaped = int(fields[13]) + int(fields[14]) if children else 0
    return (own + reaped) / _TICK


def tree_cpu(pid: int) -> float:
    """CPU of a process and its live children (a Celery worker and its pool child)."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in descendants(pid))


@dataclass
class Meter:
    """CPU of a set of long-lived processes over an interval, less their idle rate.

    A Celery worker and Redis burn a little CPU while idle (polls, timers); that rate is
    measured first (:meth:`idle`) and charged off the interval, so what remains is the work.
    """

    pids: Sequence[int]
    idle_rate: float = 0.0
    _start: float = 0.0
    _wall: float = 0.0

    def total(self) -> float:
        return sum(tree_cpu(pid) for pid in self.pids)

    def start(self) -> None:
        self._start, self._wall = self.total(), time.monotonic()

    def stop(self) -> float:
        """CPU seconds spent since :meth:`start`, less the idle rate over that time."""
        wall = time.monotonic() - self._wall
        return max(0.0, self.total() - self._start - self.idle_rate * wall)


def run_measured(
    cmd: list[str],
    env: dict[str, str],
    log: Path,
    watch: Sequence[subprocess.Popen[bytes]],
    timeout: float,
) -> tuple[float, float]:
    """Run ``cmd`` to its end; (its CPU seconds from ``wait4``, wall seconds).

    Fails if it exits non-zero, if a process in ``watch`` (a worker, Redis) dies meanwhile,
    or after ``timeout`` seconds.
    """
    return run_measured_together([(cmd, log)], env, watch, timeout)[0]


def run_measured_together(
    runs: Sequence[tuple[list[str], Path]],
    env: dict[str, str],
    watch: Sequence[subprocess.Popen[bytes]],
    timeout: float,
) -> list[tuple[float, float]]:
    """Start every ``(cmd, log)`` at once and run them to their ends; for each, in order,
    (its CPU seconds from ``wait4``, its wall seconds).

    Several producers beside one Redis are measured this way: each one's own CPU, while the
    others compete for the same Redis and cores. Fails, killing those still running, if one
    exits non-zero, if a process in ``watch`` dies meanwhile, or after ``timeout`` seconds.
    """
    began = time.monotonic()
    procs = []
    for cmd, log in runs:
        with log.open("ab") as out:
            procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT))
    found: dict[int, tuple[float, float]] = {}
    try:
        while len(found) < len(procs):
            for i, proc in enumerate(procs):
                if i in found:
                    continue
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if not pid:
                    continue
                found[i] = (_cpu(usage), time.monotonic() - began)
                proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
                if proc.returncode != 0:
                    cmd, log = runs[i]
                    raise RuntimeError(f"{shlex.join(cmd[1:])} exited {proc.returncode}; see {log}")
            if any(p.poll() is not None for p in watch) or time.monotonic() - began > timeout:
                names = "; ".join(shlex.join(cmd[1:]) for cmd, _ in runs)
                raise RuntimeError(f"a worker or redis died, or a run hung ({names}); see the logs")
            time.sleep(0.02)
    finally:
        for i, proc in enumerate(procs):
            if i not in found:
                proc.send_signal(signal.SIGKILL)
                proc.returncode = os.waitstatus_to_exitcode(os.wait4(proc.pid, 0)[1])
    return [found[i] for i in range(len(procs))]


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime
