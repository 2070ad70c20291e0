"""Whether the producer was asked to stop, and a sleep that ends as soon as it is.

A plain ``time.sleep`` cannot notice a stop: Python runs a signal's handler in the main
thread between two bytecodes, so a main thread asleep is woken by the signal, runs the
handler, and goes back to sleep for the time left. A producer that had to wake every tick
to look at a flag would pay a wake-up (about 0.1 ms of CPU on a small shared machine) in every
second it waits, and a producer whose window is full waits most of its time.

Nor can the handler set a ``threading.Event``: ``set`` takes the event's lock, which the main
thread holds for a few bytecodes around its own ``wait``; a signal landing there runs the
handler on the same thread, which then waits forever for a lock it holds itself.

So the handler does what is safe anywhere: it sets a plain flag and writes a byte into a pipe.
:meth:`StopFlag.sleep` waits on that pipe with ``select``: the signal wakes ``select``, the
handler runs and writes, and ``select``, started again, finds the byte at once. A byte written
by another thread ends a sleep the same way.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
import weakref

LONGEST_SELECT = 3600.0  # seconds one select() waits at most (a longer sleep loops)


class StopFlag:
    """False until :meth:`set`; :meth:`sleep` ends early once it is."""

    def __init__(self) -> None:
        self._set = False
        self._read, self._write = os.pipe()  # not inherited by child processes
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        weakref.finalize(self, _close, self._read, self._write)

    def __bool__(self) -> bool:
        return self._set

    def set(self) -> None:
        """Ask to stop: a sleep, now or later, ends at once. Takes no lock, so it is safe in
        a signal's handler."""
        self._set = True
        with contextlib.suppress(BlockingIOError):  # full of earlier bytes: a sleep ends anyway
            os.write(self._write, b"\0")

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (none if not positive), or less once the flag is set."""
        deadline = time.monotonic() + seconds
        while not self._set and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self._read], [], [], min(left, LONGEST_SELECT))
            if readable:
                _drain(self._read)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):  # empty now
        while os.read(fd, 512):
            pass


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)
