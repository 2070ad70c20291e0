"""producer.ledger.Ledger against a real redis-server: entries survive a restart, two inputs
never share an output name (and keep theirs across a restart), a renamed file's entry and
output claim follow it, pruning forgets files gone from the folder but not those still
followed, never releases the claim of an output that still exists, and never touches another
folder's entries."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import redis

from emotions.constants import DONE, FAILED, QUEUED
from emotions.output import alternative_name
from producer.ledger import Entry, Ledger
from tests.producer.rig import Rig


def entry(job: str = "j1", state: str = QUEUED, output: str = "") -> Entry:
    return Entry(job, "digest", "m", state, 10, 1.5, 3, output=output)


def restarted(rig: Rig) -> Ledger:
    """A new Ledger on a new connection: what a restarted producer reads."""
    return Ledger(redis.Redis.from_url(rig.url), rig.input, rig.output)


def claims(rig: Rig) -> dict[bytes, bytes]:
    """The output folder's claims, owners without this folder's prefix."""
    raw: dict[bytes, bytes] = rig.client.hgetall(rig.ledger.outputs)  # type: ignore[assignment]
    mine = f"{rig.ledger.folder}/".encode()
    return {out: owner.removeprefix(mine) for out, owner in raw.items()}


def test_entries_round_trip_and_survive_a_restart(rig: Rig) -> None:
    put = rig.ledger.put("a.json", entry())
    assert put.updated > 0
    again = restarted(rig)
    assert again.get("a.json") == put
    assert again.get("missing.json") is None
    assert again.all() == {"a.json": put}
    again.r.close()


def test_update_changes_fields_of_an_existing_entry_only(rig: Rig) -> None:
    rig.ledger.put("a.json", entry())
    updated = rig.ledger.update("a.json", state=DONE, size=11)
    assert updated is not None and (updated.state, updated.size, updated.job) == (DONE, 11, "j1")
    assert rig.ledger.get("a.json") == updated
    assert rig.ledger.update("missing.json", state=FAILED) is None
    assert rig.ledger.get("missing.json") is None


def test_same_content_and_unchanged_on_disk() -> None:
    e = entry()
    assert e.same_content("digest", "m")
    assert not e.same_content("digest", "other")
    assert not e.same_content("other", "m")
    assert e.unchanged_on_disk(10, 1.5)
    assert not e.unchanged_on_disk(10, 1.6)
    assert not e.unchanged_on_disk(11, 1.5)


def test_two_inputs_with_one_stem_get_distinct_outputs_for_good(rig: Rig) -> None:
    first = rig.ledger.claim_output("a.json")
    second = rig.ledger.claim_output("a.csv")
    assert first == "a.json"
    assert second == f"a~{hashlib.sha256(b'a.csv').hexdigest()[:8]}.json"
    # The same answers again, and after a restart, in whichever order the files come back.
    assert rig.ledger.claim_output("a.csv") == second
    again = restarted(rig)
    assert again.claim_output("a.csv") == second
    assert again.claim_output("a.json") == first
    assert claims(rig) == {b"a.json": b"a.json", second.encode(): b"a.csv"}
    again.r.close()


def test_a_third_input_with_the_same_stem_gets_its_own_name(rig: Rig) -> None:
    names = [rig.ledger.claim_output(n) for n in ("a.json", "a.csv", "a.jsonl", "a")]
    assert len(set(names)) == 4
    assert all(n.endswith(".json") for n in names)


def test_one_name_in_three_folders_gets_three_outputs_in_a_shared_output_folder(
    rig: Rig, tmp_path: Path
) -> None:
    """Several producers, one per folder, write into one output folder: a file name found in
    every folder (comments.json of each video's folder) gets an output of its own in each,
    and keeps it after a restart."""
    ledgers = [rig.ledger]
    for i in (1, 2, 3):
        folder = tmp_path / f"more-input{i}"
        folder.mkdir()
        ledgers.append(Ledger(redis.Redis.from_url(rig.url), folder, rig.output))
    names = [ledger.claim_output("comments.json") for ledger in ledgers]
    assert len(set(names)) == 4 and names[:2] == [
        "comments.json",
        alternative_name("comments.json"),
    ]
    assert [ledger.claim_output("comments.json") for ledger in reversed(ledgers)] == names[::-1]
    for ledger in ledgers[1:]:
        ledger.r.close()


def test_a_non_utf8_input_name_claims_a_utf8_output(rig: Rig) -> None:
    name = os.fsdecode(b"caf\xe9.csv")
    out = rig.ledger.claim_output(name)
    assert out.encode("utf-8")
    assert rig.ledger.claim_output(name) == out == "caf_xe9.json"


def test_forget_removes_the_entry_and_releases_its_output_claim(rig: Rig) -> None:
    out = rig.ledger.claim_output("old.json")
    rig.ledger.put("old.json", entry(output=out))
    rig.ledger.forget("old.json")
    assert rig.ledger.get("old.json") is None
    assert rig.client.hget(rig.ledger.outputs, out) is None
    # The name is free again: another input with the same stem may take it.
    assert rig.ledger.claim_output("old.csv") == out


def test_prune_forgets_files_gone_from_the_folder_with_their_claims(rig: Rig) -> None:
    for name in ("present.json", "gone.json", "followed.json"):
        rig.ledger.put(name, entry(job=name, output=rig.ledger.claim_output(name)))
    removed = rig.ledger.prune(present={"present.json"}, keep={"followed.json"})
    assert removed == 1
    assert set(rig.ledger.all()) == {"present.json", "followed.json"}
    assert claims(rig) == {
        b"present.json": b"present.json",
        b"followed.json": b"followed.json",
    }
    # The released output name is free again for whichever input comes next.
    assert rig.ledger.claim_output("gone.csv") == "gone.json"


def test_prune_releases_every_claim_of_a_gone_file(rig: Rig) -> None:
    rig.ledger.claim_output("a.json")
    alt = rig.ledger.claim_output("a.csv")
    rig.ledger.put("a.csv", entry(output=alt))
    rig.ledger.put("a.json", entry(output="a.json"))
    assert rig.ledger.prune(present={"a.json"}, keep=set()) == 1
    assert claims(rig) == {b"a.json": b"a.json"}


def test_prune_with_nothing_gone_changes_nothing(rig: Rig) -> None:
    rig.ledger.put("a.json", entry(output=rig.ledger.claim_output("a.json")))
    before = (rig.client.hgetall(rig.ledger.key), claims(rig))
    assert rig.ledger.prune(present={"a.json", "unrelated.json"}, keep=set()) == 0
    assert (rig.client.hgetall(rig.ledger.key), claims(rig)) == before
    again = restarted(rig)
    assert again.prune(present=set(), keep=set()) == 1
    again.r.close()


def test_prune_keeps_a_present_file_whose_name_is_not_utf8(rig: Rig) -> None:
    name = os.fsdecode(b"caf\xe9.json")
    rig.ledger.put(name, entry(output=rig.ledger.claim_output(name)))
    assert rig.ledger.prune(present={name}, keep=set()) == 0
    assert rig.ledger.get(name) is not None
    assert rig.ledger.prune(present=set(), keep=set()) == 1
    assert rig.client.hlen(rig.ledger.outputs) == 0


def test_a_claim_stays_while_its_output_exists_after_its_input_left(rig: Rig) -> None:
    """``a.json`` was done and removed from the input folder; its output stays: a later
    ``a.csv`` must not get (and overwrite) ``a.json``."""
    out = rig.ledger.claim_output("a.json")
    rig.ledger.put("a.json", entry(state=DONE, output=str(rig.output / out)))
    (rig.output / out).write_text("[]")
    assert rig.ledger.prune(present=set(), keep=set()) == 1
    assert rig.ledger.get("a.json") is None
    assert claims(rig) == {b"a.json": b"a.json"}
    assert rig.ledger.claim_output("a.csv") != "a.json"
    # Once that output is gone too, the next prune releases the claim.
    (rig.output / out).unlink()
    rig.ledger.prune(present={"a.csv"}, keep=set())
    assert b"a.json" not in claims(rig)


def test_two_input_folders_keep_and_prune_their_own_entries(rig: Rig) -> None:
    other_input = rig.root / "other"
    other_input.mkdir()
    other = Ledger(rig.client, other_input, rig.output)
    rig.ledger.put("a.json", entry(job="mine"))
    other.put("a.json", entry(job="theirs"))
    assert rig.ledger.key != other.key
    assert other.prune(present=set(), keep=set()) == 1
    assert rig.ledger.get("a.json").job == "mine"  # type: ignore[union-attr]
    # One output folder for both: their inputs of one name never share an output.
    assert {rig.ledger.claim_output("b.json"), other.claim_output("b.json")} == {
        "b.json",
        f"b~{hashlib.sha256(b'b.json').hexdigest()[:8]}.json",
    }


def test_the_in_flight_index_follows_entries(rig: Rig) -> None:
    rig.ledger.put("a.json", entry())
    assert rig.ledger.renamed_from("digest") == "a.json"
    rig.ledger.update("a.json", state=DONE)
    assert rig.ledger.renamed_from("digest") is None
    rig.ledger.put("b.json", entry())
    rig.ledger.put("a.json", entry(state=FAILED))  # another name's field stays
    assert rig.ledger.renamed_from("digest") == "b.json"
    rig.ledger.prune(present=set(), keep=set())
    assert rig.ledger.renamed_from("digest") is None
    assert rig.client.hlen(rig.ledger.inflight) == 0
