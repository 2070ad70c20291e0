"""Writing one file's output: the plain function behind the ``assemble_file`` task.

Stored chunk results hold label indexes only, so the assembly reads the input file again for
the ids and texts: it first checks that the file's SHA-256 is still the job's (a file changed
since it was queued is never paired with labels of other content), then cuts it into the same
chunks the producer sent and pairs each with its labels. The output is streamed into a
temporary file and renamed into place, so a reader never sees a partial file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path

import orjson

from emotions.chunking import chunks
from emotions.constants import QUEUED
from emotions.files import file_digest, write_atomic
from emotions.formats import iter_records
from emotions.jobs import JobStore, decode_labels
from emotions.output import job_output_path, json_array, render
from emotions.settings import Settings

log = logging.getLogger(__name__)


class NotReady(Exception):
    """A chunk's labels are missing (the job ended, or Redis lost them): nothing is written."""


class InputChanged(Exception):
    """The input file is no longer the content the labels belong to."""


def assemble(store: JobStore, settings: Settings, job: str) -> str:
    """Write the job's output file once; a short description of what happened.

    Raises :class:`~emotions.errors.OutputWriteError` when the output cannot be written (the
    caller retries); a changed or vanished input supersedes the job (the producer then takes
    the file as it is now); missing labels release the assembly guard for the supervisor.
    """
    meta = store.meta(job)
    if meta.get("state") != QUEUED:
        return f"skipped: job is {meta.get('state', 'expired')}"
    path = Path(meta["path"])
    try:
        if file_digest(path) != meta["digest"]:
            raise InputChanged("the input file changed while it was processed")
        output = job_output_path(meta["output"], settings.output_dir)
        write_atomic(output, json_array(_pieces(store, settings, job, meta, path)))
    except (InputChanged, FileNotFoundError) as e:
        reason = str(e) if isinstance(e, InputChanged) else "the input file disappeared"
        store.supersede(job, reason)
        log.warning("file=%s job=%s not written: %s", meta.get("name"), job, reason)
        return f"superseded: {reason}"
    except NotReady as e:
        store.release_assembly(job)
        log.warning("file=%s job=%s not written: %s", meta.get("name"), job, e)
        return f"not ready: {e}"
    store.finish(job, str(output))
    log.info(
        "file=%s written=%s records=%s chunks=%s",
        meta.get("name"),
        output,
        meta.get("records"),
        meta.get("total"),
    )
    return str(output)


def _pieces(
    store: JobStore, settings: Settings, job: str, meta: dict[str, str], path: Path
) -> Iterator[bytes]:
    """Each chunk's rendered records, pairing the re-read input with the stored labels."""
    labels: list[str] = orjson.loads(meta.get("labels", "[]"))  # none stored: no chunks
    total = int(meta["total"])
    records = iter_records(path, max_comment_chars=settings.max_comment_chars)
    pairs = zip_longest(
        chunks(records, int(meta["chunk_size"]), int(meta["chunk_bytes"])),
        store.parts(job, total),
    )
    for index, (chunk, part) in enumerate(pairs):
        if index >= total or chunk is None:
            raise InputChanged("the input file no longer has the records it was queued with")
        if part is None:
            raise NotReady(f"the labels of chunk {index} are missing")
        indices = decode_labels(part)
        if len(indices) != len(chunk):
            raise InputChanged(f"chunk {index} has {len(chunk)} records but {len(indices)} labels")
        yield render(chunk, [labels[i] for i in indices])
