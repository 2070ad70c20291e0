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
ASSEMBLE_TASK: Final = "emotions.assemble_file"

# Redis keys. ``job`` is a content+model digest, ``name`` an input file name.
KEY_PREFIX: Final = "emotions"
LEDGER_KEY: Final = f"{KEY_PREFIX}:ledger"  # hash: file name -> JSON ledger entry


def job_key(job: str) -> str:
    """Hash of a job's metadata (file name, chunk count, state, error)."""
    return f"{KEY_PREFIX}:job:{job}"


def parts_key(job: str) -> str:
    """Hash of chunk index -> the chunk's finished output records (JSON fragment)."""
    return f"{KEY_PREFIX}:job:{job}:parts"


def done_key(job: str) -> str:
    """Set of chunk indexes whose results are stored: counted once however often they run."""
    return f"{KEY_PREFIX}:job:{job}:done"


def assemble_lock_key(job: str) -> str:
    """``SET NX`` guard: exactly one assembly is enqueued per job."""
    return f"{KEY_PREFIX}:job:{job}:assemble"


# Job states, as stored in the job hash and the ledger.
QUEUED: Final = "queued"
DONE: Final = "done"
FAILED: Final = "failed"
SUPERSEDED: Final = "superseded"

OUTPUT_SUFFIX: Final = ".json"
ERROR_SUFFIX: Final = ".error.json"

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
# Tokenizing one chunk stops scaling beyond this many threads.
TOKENIZER_THREADS_MAX: Final = 8
