"""A separate process that writes a file the way youtube-comment-downloader does: it opens its
final name, appends to it piece by piece with pauses in between (network waits), and keeps it
open until the end.

``python -m harness.writer PATH`` reads hex-encoded pieces from stdin, one per line, appends
and flushes each, and answers ``wrote <size>`` once it is on disk; at the end of stdin it
closes the file and answers ``closed``. :class:`SlowWriter` drives it, so that a test decides
when each pause starts and ends and can check that the file is open meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.procs import ROOT


class SlowWriter:
    """The writer process, from the test's side."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.writer", str(path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._answer() == "open"

    def write(self, data: bytes) -> int:
        """Append ``data`` and wait until it is flushed; the file's size then."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(data.hex() + "\n")
        self.proc.stdin.flush()
        answer = self._answer()
        assert answer.startswith("wrote "), answer
        return int(answer.split()[1])

    def holds_open(self) -> bool:
        """Whether the writer process has the file open right now (from ``/proc``)."""
        target = os.path.realpath(self.path)
        fds = Path(f"/proc/{self.proc.pid}/fd")
        return any(os.path.realpath(fd) == target for fd in fds.iterdir())

    def close(self) -> None:
        """Close the file (end of stdin) and wait for the process to end."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self._answer() == "closed"
        assert self.proc.wait(timeout=10) == 0

    def kill(self) -> None:
        """End the process, closed or not, and its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def _answer(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()


def main(path: str) -> int:
    with open(path, "wb") as out:
        print("open", flush=True)
        for line in sys.stdin:
            out.write(bytes.fromhex(line.strip()))
            out.flush()
            print(f"wrote {out.tell()}", flush=True)
    print("closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
