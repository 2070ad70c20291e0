"""The chunk that completes a file assembles it in the worker that stored it, when that worker
serves the results queue; a ``-Q inference`` worker queues the assembly for the results
workers. Every fault of the assembly in place ends as the queued assembly's would: the file is
written exactly once, or superseded, and no chunk or file fails for it.

Real redis-server, real Celery workers (the fault-injecting harness where a fault must strike
at a given point of the assembly), real producer.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest
import redis

from emotions.constants import DONE, QUEUED
from harness.procs import wait_for
from harness.stack import Stack, write_json
from tests.integration.test_redis_refusals import accept, refuse
from tests.services import assert_exactly_once, comments, started_marker

pytestmark = pytest.mark.slow

ASSEMBLY_TASK = re.compile(r"Task emotions\.assemble_file\S* received")
WRITTEN = re.compile(r"file=(\S+) written=")
# Celery's line for a chunk task's success, with its result: "<n> comments; <what of the file>".
CHUNK_RESULT = re.compile(r"Task emotions\.classify_chunk\[[^\]]+\] succeeded in \S+: '([^']*)'")


def job_states(client: redis.Redis) -> dict[str, str]:
    """File name -> state of every job in Redis."""
    found = {}
    for key in client.scan_iter("emotions:job:*"):
        if key.count(b":") == 2:  # the job's hash, not its parts, starts or guard
            name, state = client.hmget(key, ["name", "state"])
            found[(name or b"").decode()] = (state or b"").decode()
    return found


def drop_files(stack: Stack) -> dict[str, list[dict[str, str]]]:
    """Two one-chunk files and one of three chunks (8 comments a chunk in the tests)."""
    files = {"a": comments(3, "a"), "b": comments(1, "b"), "c": comments(20, "c")}
    for stem, records in files.items():
        write_json(stack.input / f"{stem}.json", records)
    return files


@pytest.mark.parametrize("queues", [(), ("-Q", "inference,results")], ids=["no-Q", "both"])
def test_a_worker_on_every_queue_writes_each_file_in_the_chunk_task_that_completes_it(
    stack: Stack, queues: tuple[str, ...]
) -> None:
    stack.start_worker("w1", *queues)
    files = drop_files(stack)
    done = stack.run_producer("--once", timeout=180)
    assert done.returncode == 0, done.stderr + stack.log("w1")
    for stem, records in files.items():
        assert_exactly_once(stack, stem, records)
    log = stack.log("w1")
    assert "worker ready (inference=True, results=True," in log
    assert sorted(WRITTEN.findall(log)) == ["a.json", "b.json", "c.json"]
    assert not ASSEMBLY_TASK.search(log)  # no assembly task was queued
    completed = [r for r in CHUNK_RESULT.findall(log) if ";" in r]
    assert sorted(completed) == sorted(
        f"{n} comments; {stack.output / f'{stem}.json'}"
        for stem, n in (("a", 3), ("b", 1), ("c", 4))  # c's last chunk holds 20 - 16
    )


def test_an_inference_only_worker_queues_the_assembly_for_the_results_worker(
    stack: Stack,
) -> None:
    stack.start_worker("gpu", "-Q", "inference")
    stack.start_worker("res", "-Q", "results")
    files = drop_files(stack)
    done = stack.run_producer("--once", timeout=180)
    assert done.returncode == 0, done.stderr + stack.log("gpu") + stack.log("res")
    for stem, records in files.items():
        assert_exactly_once(stack, stem, records)
    gpu, res = stack.log("gpu"), stack.log("res")
    assert "worker ready (inference=True, results=False," in gpu
    assert not WRITTEN.search(gpu) and not ASSEMBLY_TASK.search(gpu)
    assert sorted(WRITTEN.findall(res)) == ["a.json", "b.json", "c.json"]
    assert len(ASSEMBLY_TASK.findall(res)) == 3
    completed = [r for r in CHUNK_RESULT.findall(gpu) if ";" in r]
    assert sorted(completed) == [f"{n} comments; assembly queued" for n in (1, 3, 4)]


def test_an_output_folder_that_cannot_be_written_falls_back_to_the_queued_assembly(
    stack: Stack,
) -> None:
    """Written in place it fails; queued, the assembly task retries until the folder is back."""
    stack.start_worker("w1")
    shutil.rmtree(stack.output)
    stack.output.write_text("a file where the output folder should be")
    expected = comments(10, "u")
    write_json(stack.input / "u.json", expected)
    producer = stack.start_producer("--once")
    wait_for(lambda: stack.log("w1").count("cannot write output") >= 2, 60, "queued retries")
    log = stack.log("w1")
    assert "file=u.json chunk=1 not assembled here (cannot write" in log
    assert ASSEMBLY_TASK.search(log)  # the fallback: an assembly task
    assert job_states(stack.redis.client()) == {"u.json": QUEUED}  # labels kept, not failed
    stack.output.unlink()
    stack.output.mkdir()
    assert producer.wait(timeout=60) == 0, stack.log("producer")
    assert_exactly_once(stack, "u", expected)


def test_redis_refusing_writes_in_the_middle_of_the_assembly_delays_the_file_only(
    stack: Stack,
) -> None:
    """Redis at maxmemory (noeviction) when the output is written and the job is to end: the
    worker waits and retries, exits not, fails nothing; the file ends once writes are back."""
    marker = started_marker(stack)
    worker = stack.start_worker("w1", faulty=True, FAULT_PAUSE_ASSEMBLY=str(marker))
    expected = comments(5, "r")
    write_json(stack.input / "r.json", expected)
    producer = stack.start_producer("--once")
    wait_for(lambda: (marker / "assembly-paused").exists(), 60, "the assembly to begin")
    client = stack.redis.client()
    home = str(client.config_get("dir")["dir"])
    refuse(client, "oom", stack.root / "gone")
    try:
        (marker / "assembly-go").touch()
        wait_for(lambda: (stack.output / "r.json").exists(), 30, "the output written")
        time.sleep(3)  # the job's end is refused all this while
        assert job_states(client) == {"r.json": QUEUED}
        assert worker.poll() is None and producer.poll() is None
    finally:
        accept(client, home)
    assert producer.wait(timeout=90) == 0, stack.log("producer") + stack.log("w1")
    assert job_states(client) == {"r.json": DONE}
    assert_exactly_once(stack, "r", expected)
    assert worker.poll() is None and not list(stack.failed.iterdir())


def test_an_input_changed_between_its_last_chunk_and_the_assembly_is_redone_not_written(
    stack: Stack,
) -> None:
    marker = started_marker(stack)
    stack.start_worker("w1", faulty=True, FAULT_PAUSE_ASSEMBLY=str(marker))
    write_json(stack.input / "f.json", comments(5, "old"))
    stack.start_producer()
    wait_for(lambda: (marker / "assembly-paused").exists(), 60, "the assembly to begin")
    newer = comments(7, "new")
    write_json(stack.input / "f.json", newer)
    (marker / "assembly-go").touch()
    wait_for(lambda: "event=finished" in stack.log("producer"), 90, "the new content's end")
    assert_exactly_once(stack, "f", newer)
    log = stack.log("w1")
    assert WRITTEN.findall(log) == ["f.json"], log  # once: the old content was never written
    # The assembly in place found the input changed, unless the producer saw it first.
    assert "superseded:" in log or "skipped: job is superseded" in log, log


def test_a_worker_killed_in_the_middle_of_the_assembly_writes_the_file_when_it_is_back(
    stack: Stack,
) -> None:
    """Killed after the output was renamed into place, before the job ended: the pool sees its
    child die and requeues the chunk, whose next run (holding the assembly guard) assembles
    again; before, only the producer's stall supervision could have ended the job."""
    marker = started_marker(stack)
    stack.start_worker("w1", faulty=True, FAULT_KILL_BEFORE_FINISH=str(marker))
    expected = comments(20, "k")  # three chunks
    write_json(stack.input / "k.json", expected)
    producer = stack.start_producer("--once")
    wait_for(lambda: (marker / "killed-before-finish").exists(), 60, "the kill")
    client = stack.redis.client()
    assert job_states(client) == {"k.json": QUEUED}  # the assembly was unfinished
    began = time.monotonic()
    assert producer.wait(timeout=90) == 0, stack.log("producer") + stack.log("w1")
    assert time.monotonic() - began < 90
    assert job_states(client) == {"k.json": DONE}
    assert_exactly_once(stack, "k", expected)
    log = stack.log("w1")
    assert "stored before" in log and not ASSEMBLY_TASK.search(log), log
    assert "heal=" not in stack.log("producer")  # not the supervisor's doing
    assert not [p for p in stack.output.iterdir() if p.name != "k.json"]
