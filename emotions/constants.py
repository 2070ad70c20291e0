"""Names and defaults shared by the worker, the producer and the tests: one place, no literals.

Queue and task names are public (operators route with ``-Q`` and read them in Flower); Redis
key layout is internal but must agree between processes, so it lives here too.
"""

from typing import Final

DEFAULT_MODEL: Final = "AnasAlokla/multilingual_go_emotions"
DEFAULT_BROKER_URL: Final = "redis://localhost:6379/0"

APP_NAME: Final = "emotions"  # Celery app name (prefix of the task names)

# Queues: GPU nodes consume ``inference``; the host owning the output folder consumes ``results``.
INFERENCE_QUEUE: Final = "inference"
RESULTS_QUEUE: Final = "results"
QUEUES: Final = (INFERENCE_QUEUE, RESULTS_QUEUE)

# Task names (stable across refactors: messages in a persisted queue refer to them).
CLASSIFY_TASK: Final = "emotions.classify_chunk"
# Chunk messages: JSON written by orjson (the texts are encoded once, when the file is checked).
CHUNK_SERIALIZER: Final = "emotions-orjson"
CHUNK_CONTENT_TYPE: Final = "application/x-emotions-orjson"
ASSEMBLE_TASK: Final = "emotions.assemble_file"
# A feed's chunk messages go to Redis in pipelines of at most this many messages or bytes
# (emotions.publish); their task-sent events follow in kombu batches of as many commands.
PUBLISH_BATCH_COMMANDS: Final = 256
PUBLISH_BATCH_BYTES: Final = 8 << 20
# The producer's check reads JSON Lines about this many bytes of lines at a time: a block of
# plain comments is decoded and measured without Python per line (emotions.formats.texts).
TEXT_BLOCK_BYTES: Final = 1 << 20
# ... and other formats' texts this many records at a time.
TEXT_BLOCK_RECORDS: Final = 1024

# Redis keys. ``job`` is a content+model digest, ``name`` an input file name, ``folder`` the
# first hex digits of the SHA-256 of a resolved folder path (producer/folder.py): several
# producers, each on its own input folder, share one Redis.
KEY_PREFIX: Final = "emotions"
FOLDER_ID_CHARS: Final = 16
# Before per-folder keys there was one ledger and one claims hash; an upgraded producer adopts
# them once (producer/folder.py).
LEGACY_LEDGER_KEY: Final = f"{KEY_PREFIX}:ledger"
LEGACY_OUTPUTS_KEY: Final = f"{KEY_PREFIX}:outputs"
# A producer holds its input folder's lock this long, refreshing it every PRODUCER_LOCK_REFRESH
# seconds: a second producer on the same folder is refused; a crashed one's lock expires.
PRODUCER_LOCK_SECONDS: Final = 30
PRODUCER_LOCK_REFRESH: Final = 10.0
# The producer takes files (hashes, checks, creates their jobs) only while fewer than this
# many taken files still have chunks to send: the rest wait in its ready queue, where a new
# file goes before files found by rescans, instead of behind a backlog of jobs in Redis.
FEED_AHEAD_FILES: Final = 32
# A producer whose window is full waits for the workers' notes that chunks were stored, and
# refills once a REFILL_SHARE-th of the window has finished (at least one chunk): the workers
# keep at least half the window, and one refill sends many chunks, not one per note (each
# turn of the loop costs the producer about a millisecond of CPU).
REFILL_SHARE: Final = 2
# Once a note came, the producer sleeps until enough should have come at the rate they came
# (at least GATHER_SECONDS, at most a tick), then reads them all: reading each note as it
# came woke the process once per chunk stored, and a wake-up alone costs some 0.1 ms of CPU.
GATHER_SECONDS: Final = 0.02
# While notes were heard within this long, a full window waits for them (or the next poll)
# even through a quiet tick: a turn of the loop costs about a millisecond of CPU, and a producer
# that feeds a busy fleet spends most of its time with its window full. Without a note for this
# long (workers of an earlier version send none), a quiet tick ends the wait, as before there
# were notes. Long enough to bridge the pauses while the workers serve other folders' chunks.
NOTES_TRUSTED_SECONDS: Final = 5.0
# A listener that failed is made again after this long (Redis unavailable) ...
LISTEN_RETRY_SECONDS: Final = 1.0
# ... or, after an error that says it will not work (a user whose ACL lacks the channel),
# after this long, and said once each time.
LISTEN_BROKEN_SECONDS: Final = 300.0
# A missing output of unchanged content (deleted, moved away downstream) is made again this
# many times, then left missing until the input changes (not redone at every rescan).
OUTPUT_REDOS: Final = 1


def ledger_key(folder: str) -> str:
    """Hash of an input folder's files: file name -> JSON ledger entry."""
    return f"{KEY_PREFIX}:ledger:{folder}"


def inflight_key(folder: str) -> str:
    """Hash of an input folder's jobs in flight: content digest -> file name (renames)."""
    return f"{KEY_PREFIX}:inflight:{folder}"


def outputs_key(output_folder: str) -> str:
    """Hash of an output folder's claims: output file name -> ``<input folder>/<file name>``."""
    return f"{KEY_PREFIX}:outputs:{output_folder}"


def producer_lock_key(folder: str) -> str:
    """The running producer of an input folder (``SET NX`` with a TTL)."""
    return f"{KEY_PREFIX}:producer:{folder}"


def stored_channel(folder: str) -> str:
    """Pub/sub channel on which a worker says that it stored a chunk of one of an input
    folder's jobs (the job record's ``notify`` field names it; producer/doorbell.py)."""
    return f"{KEY_PREFIX}:stored:{folder}"


def job_key(job: str) -> str:
    """Hash of a job's metadata (file name, chunk count, state, error)."""
    return f"{KEY_PREFIX}:job:{job}"


def parts_key(job: str) -> str:
    """Hash of chunk index -> the chunk's label indexes, one byte per comment."""
    return f"{KEY_PREFIX}:job:{job}:parts"


def starts_key(job: str) -> str:
    """Hash of chunk index -> times a worker began it (a chunk that kills its worker)."""
    return f"{KEY_PREFIX}:job:{job}:starts"


def assemble_lock_key(job: str) -> str:
    """``SET NX`` guard: exactly one assembly is enqueued per job."""
    return f"{KEY_PREFIX}:job:{job}:assemble"


# Job states, as stored in the job hash and the ledger.
QUEUED: Final = "queued"
DONE: Final = "done"
FAILED: Final = "failed"
SUPERSEDED: Final = "superseded"

# How often a stopping worker's event loop checks whether the chunk in hand has finished.
STOP_POLL_SECONDS: Final = 0.2

OUTPUT_SUFFIX: Final = ".json"
ERROR_SUFFIX: Final = ".error.json"
# Bytes per read of an input file, by the assembly (hashed as it is parsed, emotions.hashing) and
# by the producer's check: a large file is read in a few big reads, and a line of a Data API
# page (~100 KB) is found in one buffer instead of being joined from 8 KB ones (4x the cost).
INPUT_READ_BYTES: Final = 1 << 20
# CSV rows or array elements the assembly takes apart at once (worker.fastread): enough to
# make each whole-column pass cheap per comment, few enough that a block stays in the caches.
ASSEMBLY_BLOCK: Final = 512
# Chunks whose stored labels the assembly fetches in one round trip (HMGET): a few hundred
# round trips fewer on a large file, at most this many chunks' labels held at once.
PARTS_PER_FETCH: Final = 64
# Bytes of CSV taken apart as one block, by the producer's check and the assembly
# (emotions.formats.fastcsv): a few thousand rows, so each of the block's numpy passes costs
# little per row.
CSV_BLOCK_BYTES: Final = 1 << 20
# Bytes of JSON Lines the assembly reads as one block: a few hundred downloader lines, or one
# or two Data API pages (about 100 KB each).
ASSEMBLY_BLOCK_BYTES: Final = 128 * 1024
# File names are at most 255 bytes on Linux filesystems; the longest name derived from an
# input (``.<name>.<random>.tmp`` while writing, ``<name>.error.json`` reports) must fit.
NAME_BYTES: Final = 200
NAME_HASH_CHARS: Final = 8  # hex digits of SHA-256 that keep shortened names unique

# Supervision. A chunk may be begun ``max_retries + 1`` times by retries, plus this many times
# more after its worker vanished (OOM killer, node lost) before its file fails.
LOST_WORKER_STARTS: Final = 2
# Heals (re-sending the chunks of a job that made no progress) before its file fails.
MAX_HEALS: Final = 3
# How often the producer refreshes the TTL of the jobs it follows, in seconds.
TOUCH_SECONDS: Final = 60.0

# Redis refusing writes (emotions.redisfaults). A worker holding a message it could not record
# as unacknowledged retries the record this long (seconds) before reconnecting: the message
# exists nowhere else. Waits between tries grow to REFUSAL_RETRY_MAX_SECONDS.
REFUSAL_PATIENCE_SECONDS: Final = 30.0
REFUSAL_RETRY_MAX_SECONDS: Final = 2.0
# ``status`` writes this key (expiring after PROBE_TTL_SECONDS) to tell a Redis that answers
# reads but refuses writes from one that works.
PROBE_KEY: Final = f"{KEY_PREFIX}:probe"
PROBE_TTL_SECONDS: Final = 10

# When a file in the input folder counts as complete (producer/completion.py), in seconds.
DEFAULT_SETTLE_SECONDS: Final = 1.0  # unchanged this long after a close, a move in, or a scan
DEFAULT_OPEN_FILE_SECONDS: Final = 3600.0  # written since its last close: waited for this long
DEFAULT_INCOMPLETE_SECONDS: Final = 300.0  # read as cut short: read again after this long

# --- Inference engine (worker/) ---------------------------------------------------------------
# EMOTIONS_BATCH_SIZE=auto: rows per batch are decided by EMOTIONS_TOKEN_BUDGET alone.
AUTO_BATCH: Final = "auto"
MAX_BATCH_ROWS: Final = 4096  # the largest fixed EMOTIONS_BATCH_SIZE accepted
# With "auto", what one more forward pass costs, in padded tokens: the planner cuts a batch
# where the padding it saves outweighs this (worker/batching.py, cost_cuts).
AUTO_FORWARD_TOKENS: Final = 2048
# Width buckets of the CUDA-graph shapes (tokens); the model's maximum length is always added.
# Steps of 8 tokens up to 64, then of about 1.25x: 20 graphs, and on the benchmark's corpus
# 0.82 padding efficiency at batch 16 (steps of 1.5x gave 0.76).
GRAPH_WIDTHS: Final = (*range(8, 65, 8), 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512)
# CUDA graphs are captured only for a fixed batch size up to this many rows; larger batches
# (and EMOTIONS_BATCH_SIZE=auto) amortise the per-forward launch cost by themselves.
GRAPH_MAX_ROWS: Final = 64
# Eager forwards per captured shape before capture (cuBLAS/allocator warm-up, as PyTorch advises).
GRAPH_WARMUP_RUNS: Final = 3
# Labels of the CUDA-graph path must equal eager ones wherever the top-2 logit gap exceeds this.
GRAPH_CHECK_GAP: Final = 0.05
# On a GPU a chunk is tokenized in this many slices, the next while the GPU runs the last...
PIPELINE_SLICES: Final = 2
# ...unless a slice would hold fewer comments than this (each slice is sorted on its own).
PIPELINE_MIN_SLICE: Final = 128
# A threads-pool worker holds this many received chunks beyond the one it runs, and tokenizes
# them ahead: with one, the next chunk often arrived just after the running one looked for it.
LOOK_AHEAD_CHUNKS: Final = 2
# Tokenizing one chunk stops scaling beyond this many threads.
TOKENIZER_THREADS_MAX: Final = 8
# A forward on the CPU whose work (tokens x hidden size squared x layers, about a twelfth of
# its multiply-adds) is below this runs on one intra-op thread: a few comments through a small
# model take microseconds per op, and spreading each op over threads costs more CPU in
# synchronisation (and spinning threads) than it saves in wall time.
CPU_SERIAL_FORWARD_WORK: Final = 1 << 24
# A prefork worker whose GPU faulted on this many different chunks in a row (no chunk finished
# in between; each fault restarts the pool child) treats its GPU as broken and stops.
DEVICE_FAULT_CHUNKS: Final = 2
# Exit status of a pool child (or an in-process worker) that stopped for a device fault.
DEVICE_FAULT_EXIT: Final = 3
# A worker leaving from a task's thread hands its messages back, waits this long for one its
# consumer had already taken from the queue, and hands back again (worker.shutdown).
HAND_BACK_SETTLE_SECONDS: Final = 0.2
# Self-test at start (worker/selftest.py): labels of the device path must equal the CPU fp32
# reference wherever the reference's top-2 logit gap exceeds this.
SELFTEST_GAP: Final = 0.05
# Label index that a forward returns for a row whose logits are not all finite (relabelled in
# fp32 on the CPU); never a real label.
NONFINITE_LABEL: Final = -1
# Comments of the synthetic corpus that ``python -m worker.check`` times by default.
CHECK_COMMENTS: Final = 20_000
