"""Where a file's output goes, decided once by the producer, and what a missing one means.

The producer claims the output name (:meth:`producer.ledger.Ledger.claim_output`) and stores
the absolute output path in the job and in the ledger; the results worker writes exactly that
path, and the producer decides "done" by the same path. So a results worker started with
another ``EMOTIONS_OUTPUT_DIR`` (or from another working directory) cannot make the producer
and the worker disagree about where outputs are.

An output that went missing after its file was done (deleted, or moved away by a downstream
job) is made again once, with a warning; if it goes missing again, it is left so (with a
warning, once), instead of being redone at every rescan. New content in the file, or another
model, starts the count again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from emotions.constants import OUTPUT_REDOS as MAX_REDOS
from emotions.errors import EmotionsError
from emotions.files import display_name, inside
from producer.ledger import Entry, Ledger

log = logging.getLogger(__name__)


class Outputs:
    """The output folder as the producer sees it: claims, paths, and missing outputs."""

    def __init__(self, ledger: Ledger, output_dir: Path) -> None:
        self.ledger = ledger
        self.output_dir = output_dir

    def claim(self, name: str) -> str:
        """The absolute output path of input ``name`` (its name claimed for it)."""
        return str(inside(self.output_dir, self.ledger.claim_output(name)))

    def path(self, entry: Entry) -> Path | None:
        """The output path an entry records (older entries recorded a name); None if none."""
        if not entry.output:
            return None
        recorded = Path(entry.output)
        try:
            return recorded if recorded.is_absolute() else inside(self.output_dir, entry.output)
        except EmotionsError:
            return None

    def exists(self, entry: Entry) -> bool:
        path = self.path(entry)
        return path is not None and os.path.isfile(path)

    def given_up(self, entry: Entry) -> bool:
        """A missing output that was already made again as often as allowed."""
        return entry.redone > MAX_REDOS

    def redo(self, name: str, entry: Entry, size: int, mtime: float) -> bool:
        """The output of finished, unchanged content is missing: True to make it again (once,
        with a warning); False when it was made again already (warned once, then left)."""
        shown = display_name(name)
        if entry.redone < MAX_REDOS:
            log.warning(
                "file=%s event=output-missing %s is gone; making it again (once: if it goes "
                "missing again it is left so)",
                shown,
                self.path(entry),
            )
            return True
        if not self.given_up(entry):
            log.warning(
                "file=%s event=output-missing %s is gone again after it was made again; "
                "not made again until the file changes (moved away by a downstream job?)",
                shown,
                self.path(entry),
            )
            self.ledger.update(name, redone=entry.redone + 1, size=size, mtime=mtime)
        return False
