"""Writing one file's output: the plain function behind the ``assemble_file`` task.

Stored chunk results hold label indexes only, so the assembly reads the input file again for
the ids and texts, in one pass: the file is opened once, its SHA-256 computed over the very
bytes parsed (:class:`~emotions.hashing.HashedInput`), and compared with the job's before the
output is renamed into place. A file replaced or changed since it was queued is therefore never
written with labels of other content, whenever the change happened. Chunk ``k`` holds as many
records as its stored labels, in file order, so the records are paired with the labels without
cutting the file into chunks again (the same content cuts the same way, and the digest proves
the content). The output is streamed into a temporary file, so a file of any size is written
in bounded memory, and a reader never sees a partial file.

The input is read through :mod:`worker.fastread` (blocks of ids and texts, each chunk rendered
in one call, :func:`~emotions.output.render_columns`): the records are exactly the format
readers', at a fraction of their cost. Where that path cannot vouch for the input (a shape it
does not know, anything the readers would refuse, content that is not the job's or does not
hold its records), the file is assembled again from its first byte through the readers, so
every verdict other than a written output, and its wording, stays theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from emotions.constants import QUEUED
from emotions.errors import FallbackToReaders, InputError
from emotions.files import write_atomic
from emotions.formats import Format, Record, detect, read_records
from emotions.hashing import HashedInput
from emotions.jobs import JobStore, Stored, decode_labels
from emotions.output import job_output_path, json_array, render_columns, render_indexed
from emotions.settings import Settings
from worker.fastread import columns

log = logging.getLogger(__name__)


class Source(NamedTuple):
    """The input's name (for messages) and its format."""

    name: str
    fmt: Format


class NotReady(Exception):
    """A chunk's labels are missing (the job ended, or Redis lost them): nothing is written."""


class Unreadable(Exception):
    """The job's own content (its digest matches) cannot be read here, though the producer
    read it: the two processes disagree on a limit. Failing the file ends it; superseding it
    would have the producer submit the same content again, forever."""


class InputChanged(Exception):
    """The input file is no longer the content the labels belong to."""


def assemble(store: JobStore, settings: Settings, job: str, stored: Stored | None = None) -> str:
    """Write the job's output file once; a short description of what happened.

    ``stored``: what the worker that stored the last chunk read in the same script (the job's
    metadata, that chunk's labels); what it lacks is read here.

    Raises :class:`~emotions.errors.OutputWriteError` when the output cannot be written (the
    caller retries); a changed, cut short or vanished input supersedes the job (the producer
    then takes the file as it is now); missing labels release the assembly guard for the
    supervisor.
    """
    meta = stored.meta if stored is not None and stored.meta else store.meta(job)
    known = stored.known if stored is not None else {}
    if meta.get("state") != QUEUED:
        return f"skipped: job is {meta.get('state', 'expired')}"
    path = Path(meta["path"])
    try:
        output = job_output_path(meta["output"], settings.output_dir)
        # The format is read here, outside the write: a missing input is not an output error.
        # A replacement between this and the opening of the stream fails the digest check.
        described = Source(path.name, detect(path))
        try:
            _write(store, settings, job, meta, known, described, output, fast=True)
        except FallbackToReaders:
            _write(store, settings, job, meta, known, described, output, fast=False)
    except (InputChanged, InputError, FileNotFoundError) as e:
        # An InputError here is detect's: content it refuses cannot be the job's, which passed.
        reason = "the input file disappeared" if isinstance(e, FileNotFoundError) else str(e)
        store.supersede(job, reason)
        log.warning("file=%s job=%s not written: %s", meta.get("name"), job, reason)
        return f"superseded: {reason}"
    except Unreadable as e:
        # The very content the producer checked: taking the file again would redo it forever.
        error = (
            f"the results worker cannot read the input the producer checked: {e} (do both use "
            "the same EMOTIONS_MAX_COMMENT_CHARS?)"
        )
        store.fail(job, {"error": error, "file": meta.get("name")})
        log.error("file=%s job=%s not written: %s", meta.get("name"), job, error)
        return f"failed: {error}"
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


def _write(
    store: JobStore,
    settings: Settings,
    job: str,
    meta: dict[str, str],
    known: dict[int, bytes],
    described: Source,
    output: Path,
    fast: bool,
) -> None:
    """Read the input once (through :mod:`worker.fastread` if ``fast``) and write the output.

    Raises :class:`~emotions.errors.FallbackToReaders` (nothing written) where the fast path
    gives up.
    """
    with HashedInput(Path(meta["path"]).open("rb")) as source:
        parts = store.parts(job, int(meta["total"]), known)
        pieces = _pieces(settings, meta, parts, source, described, fast)
        write_atomic(output, json_array(pieces))


def _pieces(
    settings: Settings,
    meta: dict[str, str],
    parts: Iterator[bytes | None],
    source: HashedInput,
    described: Source,
    fast: bool,
) -> Iterator[bytes]:
    """Each chunk's rendered records, then the proof that they came from the job's content.

    Raises :class:`InputChanged` (before the caller renames anything into place) when the
    bytes read are not the job's, whatever the parser made of them: other records, an error,
    or the end of a file still being written. The fast path raises
    :class:`~emotions.errors.FallbackToReaders` instead, so that the readers give the verdict.
    """
    labels: list[str] = orjson.loads(meta.get("labels", "[]"))  # none stored: no chunks
    pair = _fast_paired if fast else _paired
    try:
        yield from pair(source, described, parts, labels, settings)
        if fast and source.hexdigest() != meta["digest"]:
            raise FallbackToReaders  # content the producer did not check: the readers decide
    except InputChanged as e:
        if fast:
            raise FallbackToReaders from e
        raise
    except InputError as e:  # IncompleteInputError included: content that is not the job's
        if source.hexdigest() != meta["digest"]:
            raise InputChanged(f"the input file changed while it was processed ({e})") from e
        raise Unreadable(str(e)) from e
    except FileNotFoundError as e:  # gone since it was opened (the format is read by name)
        raise InputChanged("the input file disappeared") from e
    if source.hexdigest() != meta["digest"]:
        raise InputChanged("the input file changed while it was processed")


def _fast_paired(
    source: HashedInput,
    described: Source,
    parts: Iterator[bytes | None],
    labels: list[str],
    settings: Settings,
) -> Iterator[bytes]:
    """:func:`_paired` from blocks of columns: chunk ``k``'s ids and texts, then its labels."""
    name, fmt = described
    blocks = columns(source.stream, name, fmt, settings.max_comment_chars)
    ids: list[Any] = []
    texts: list[str] = []
    for index, part in enumerate(parts):
        if part is None:
            raise NotReady(f"the labels of chunk {index} are missing")
        indices = decode_labels(part)
        count = len(indices)
        while len(ids) < count:
            block = next(blocks, None)
            if block is None:
                raise InputChanged("the input file no longer has the records it was queued with")
            ids += block[0]
            texts += block[1]
        yield render_columns(ids[:count], texts[:count], map(labels.__getitem__, indices))
        del ids[:count], texts[:count]
    if ids or any(block[0] for block in blocks):
        raise InputChanged("the input file has more records than it was queued with")


def _paired(
    source: HashedInput,
    described: Source,
    parts: Iterator[bytes | None],
    labels: list[str],
    settings: Settings,
) -> Iterator[bytes]:
    """Chunk ``k``'s records (as many as its labels, in file order), rendered with them."""
    name, fmt = described
    limit = settings.max_comment_chars
    records: Iterator[Record] = read_records(source.stream, name, fmt, max_comment_chars=limit)
    for index, part in enumerate(parts):
        if part is None:
            raise NotReady(f"the labels of chunk {index} are missing")
        indices = decode_labels(part)
        chunk = list(islice(records, len(indices)))
        if len(chunk) != len(indices):
            raise InputChanged("the input file no longer has the records it was queued with")
        yield render_indexed(chunk, indices, labels)
    if next(records, None) is not None:
        raise InputChanged("the input file has more records than it was queued with")
