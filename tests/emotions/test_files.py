"""emotions.files: user-supplied names never escape the output/failed folders, long names are
shortened by bytes (so that temporary and report names still fit in 255 bytes) and stay
distinct, and an output file is either the old one or the complete new one, never a partial
one, with no temp file left."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from emotions.constants import NAME_BYTES
from emotions.errors import OutputWriteError, TransientError
from emotions.files import file_digest, inside, report_path, safe_name, shorten, write_atomic
from emotions.output import output_name

HOSTILE = [
    "../../x.json",
    "../../../../etc/passwd",
    "/etc/cron.d/evil.json",
    "..\\..\\x.json",
    "C:\\Users\\me\\comments.json",
    "a\nb\rc\x00d\x1b[31m\x7f.json",
    ".hidden",
    ".hidden.json",
    "..",
    ".",
    "...",
    "",
    "/",
    "dir/",
    "x" * 500 + ".json",
    "sub/dir/\u202eevil.json",
]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("comments.json", "comments.json"),
        ("../../x.json", "x.json"),
        ("..\\..\\x.json", "x.json"),
        ("C:\\Users\\me\\comments.json", "comments.json"),
        ("a\nb\x00c\x7f\x1b.json", "a_b_c__.json"),
        ("tab\there.csv", "tab_here.csv"),
        (".hidden", "hidden"),
        ("..hidden.json", "hidden.json"),
        ("..", "_"),
        ("", "_"),
        ("/", "_"),
        ("هذا 😂.json", "هذا 😂.json"),
    ],
)
def test_safe_name(name: str, expected: str) -> None:
    assert safe_name(name) == expected


@pytest.mark.parametrize("name", HOSTILE)
def test_safe_name_is_one_visible_component(name: str) -> None:
    safe = safe_name(name)
    assert safe and not safe.startswith(".")
    assert "/" not in safe and "\\" not in safe
    assert not any(ord(c) < 32 or ord(c) == 127 for c in safe)
    assert len(safe.encode("utf-8", "surrogateescape")) <= NAME_BYTES
    assert safe not in {".", ".."}


@pytest.mark.parametrize("name", HOSTILE)
def test_output_and_report_paths_stay_inside_their_folders(name: str, tmp_path: Path) -> None:
    out, failed = tmp_path / "output", tmp_path / "failed"
    out.mkdir()
    failed.mkdir()
    o = inside(out, output_name(name))
    r = report_path(failed, name)
    assert o.parent == out.resolve() and r.parent == failed.resolve()
    assert o.suffix == ".json" and r.name.endswith(".error.json")
    assert not o.name.startswith(".") and not r.name.startswith(".")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("comments.jsonl", "comments.json"),
        ("a.b.csv", "a.b.json"),
        ("comments.json", "comments.json"),
        ("../../x.json", "x.json"),
        ("..", "_.json"),
        (".json", "json.json"),
        ("noext", "noext.json"),
    ],
)
def test_output_name_is_the_stem_plus_json(name: str, expected: str) -> None:
    assert output_name(name) == expected


def test_report_path_keeps_the_full_input_name(tmp_path: Path) -> None:
    assert report_path(tmp_path, "bad.csv") == tmp_path.resolve() / "bad.csv.error.json"
    assert report_path(tmp_path, "../../bad.csv") == tmp_path.resolve() / "bad.csv.error.json"
    assert report_path(tmp_path, "a\nb.json").name == "a_b.json.error.json"


def test_a_symlink_in_the_output_folder_cannot_redirect_the_write(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "output", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    victim = elsewhere / "victim.json"
    victim.write_text("precious")
    (out / "evil.json").symlink_to(victim)
    with pytest.raises(OutputWriteError):
        inside(out, output_name("evil.csv"))
    with pytest.raises(OutputWriteError):
        inside(out, "evil.json")
    assert victim.read_text() == "precious"


def test_inside_refuses_names_that_leave_the_folder(tmp_path: Path) -> None:
    for name in ("../x.json", "sub/x.json", "..", "/etc/passwd"):
        with pytest.raises(OutputWriteError):
            inside(tmp_path, name)
    assert inside(tmp_path, "x.json") == tmp_path.resolve() / "x.json"


# --- write_atomic --------------------------------------------------------------------------


def test_write_atomic_writes_every_piece_and_leaves_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "out" / "comments.json"  # the folder is created on demand
    write_atomic(path, [b"[\n", "هذا 😂".encode(), b"\n]\n"])
    assert path.read_bytes() == b"[\n" + "هذا 😂".encode() + b"\n]\n"
    assert os.listdir(path.parent) == ["comments.json"]


def test_write_atomic_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "comments.json"
    path.write_bytes(b"old")
    write_atomic(path, iter([b"new", b"er"]))
    assert path.read_bytes() == b"newer"
    assert os.listdir(tmp_path) == ["comments.json"]


def test_write_atomic_never_shows_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "comments.json"
    path.write_bytes(b"old complete content")
    seen_temps: set[str] = set()

    def pieces() -> Iterator[bytes]:
        for i in range(5):
            # While writing, a reader of the output name still sees the old, complete file...
            assert path.read_bytes() == b"old complete content"
            # ...and the work in progress is a hidden file in the same folder (same filesystem,
            # so the final rename is atomic; hidden, so no folder scanner picks it up).
            temps = [n for n in os.listdir(tmp_path) if n != "comments.json"]
            assert len(temps) == 1 and temps[0].startswith(".")
            seen_temps.update(temps)
            yield f"piece {i}\n".encode()

    write_atomic(path, pieces())
    assert path.read_bytes() == b"".join(f"piece {i}\n".encode() for i in range(5))
    assert len(seen_temps) == 1 and not (tmp_path / seen_temps.pop()).exists()


def test_generator_failing_midway_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "comments.json"
    path.write_bytes(b"old")

    def pieces() -> Iterator[bytes]:
        yield b"[\n"
        yield b'{"id": "1"}'
        raise RuntimeError("the job ended during assembly")

    with pytest.raises(RuntimeError, match="job ended"):
        write_atomic(path, pieces())
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["comments.json"]


def test_generator_failing_before_any_output_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "comments.json"

    def pieces() -> Iterator[bytes]:
        yield b"[\n"
        raise KeyError("part")

    with pytest.raises(KeyError):
        write_atomic(path, pieces())
    assert os.listdir(tmp_path) == []


def test_disk_full_midway_is_a_transient_output_write_error(tmp_path: Path) -> None:
    path = tmp_path / "comments.json"
    path.write_bytes(b"old")

    def pieces() -> Iterator[bytes]:
        yield b"[\n"
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputWriteError, match="No space left on device") as info:
        write_atomic(path, pieces())
    assert isinstance(info.value, TransientError)
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["comments.json"]


def test_output_folder_that_is_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "output"
    blocker.write_bytes(b"not a folder")
    with pytest.raises(OutputWriteError) as info:
        write_atomic(blocker / "comments.json", [b"[]\n"])
    assert isinstance(info.value, TransientError)
    assert blocker.read_bytes() == b"not a folder"
    assert os.listdir(tmp_path) == ["output"]


def test_output_folder_below_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(OutputWriteError):
        write_atomic(tmp_path / "file" / "sub" / "comments.json", [b"[]\n"])
    assert os.listdir(tmp_path) == ["file"]


def test_output_can_be_written_again_after_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "comments.json"

    def failing() -> Iterator[bytes]:
        yield b"["
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputWriteError):
        write_atomic(path, failing())
    write_atomic(path, [b"[]\n"])
    assert path.read_bytes() == b"[]\n"
    assert os.listdir(tmp_path) == ["comments.json"]


def test_output_file_permissions_follow_the_umask(tmp_path: Path) -> None:
    """Analysts (often another user, or outside the worker's container) read the outputs: the
    file must get the same mode as any file the process creates, not mkstemp's private 0600."""
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "comments.json", [b"[]\n"])
        (tmp_path / "plain.json").write_bytes(b"[]\n")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "comments.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o644


# --- long names: shortened by bytes, distinct, and still writable ---------------------------

JAPANESE = "日本語のコメント" * 13 + ".json"  # 317 bytes: no filesystem takes it as is
ARABIC = "تعليقات" * 22 + ".json"  # 313 bytes


def nbytes(name: str) -> int:
    return len(name.encode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("name", [JAPANESE, ARABIC])
def test_a_long_multibyte_name_is_cut_at_a_character_boundary(name: str) -> None:
    assert nbytes(name) > 300
    safe = safe_name(name)
    assert nbytes(safe) <= NAME_BYTES
    assert safe.endswith(".json")
    assert "\ufffd" not in safe and safe.encode("utf-8")  # whole characters only
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    assert safe.endswith(f"~{digest}.json")
    assert name.startswith(safe.removesuffix(f"~{digest}.json"))
    out = output_name(name)
    assert nbytes(out) <= NAME_BYTES and out.endswith(".json")


@pytest.mark.parametrize("name", [JAPANESE, ARABIC])
def test_a_long_name_gives_temporary_and_report_names_that_fit(name: str, tmp_path: Path) -> None:
    """The temporary file is ``.<name>.<random>.tmp`` and the report ``<name>.error.json``:
    both must stay under the 255 bytes a Linux file name may have, on a real filesystem."""
    target = inside(tmp_path, output_name(name))
    temps: list[str] = []

    def pieces() -> Iterator[bytes]:
        temps.extend(n for n in os.listdir(tmp_path) if n.startswith("."))
        yield b"[]\n"

    write_atomic(target, pieces())
    assert target.read_bytes() == b"[]\n"
    assert len(temps) == 1 and 200 < nbytes(temps[0]) < 255
    report = report_path(tmp_path, name)
    assert nbytes(report.name) < 255
    write_atomic(report, [b"{}"])
    assert sorted(os.listdir(tmp_path)) == sorted([target.name, report.name])


def test_long_names_sharing_a_prefix_stay_distinct() -> None:
    prefix = "日本語のコメント" * 13
    names = [f"{prefix}{tail}" for tail in ("a.json", "b.json", "a.csv", "a")]
    assert len({safe_name(n) for n in names}) == len(names)
    assert len({output_name(n) for n in names[:2]}) == 2
    assert all(nbytes(safe_name(n)) <= NAME_BYTES for n in names)


def test_a_long_name_that_is_not_utf8_is_shortened_and_writable(tmp_path: Path) -> None:
    """Linux names are bytes: Latin-1 ones arrive as surrogate escapes."""
    name = os.fsdecode(b"caf\xe9-" * 80 + b".json")
    safe = safe_name(name)
    assert nbytes(safe) <= NAME_BYTES and safe.endswith(".json")
    assert safe != safe_name(os.fsdecode(b"caf\xe9-" * 81 + b".json"))
    write_atomic(inside(tmp_path, safe), [b"[]"])
    assert os.listdir(tmp_path) == [safe]


@pytest.mark.parametrize(
    ("name", "limit", "expected"),
    [
        ("short.json", 20, "short.json"),
        ("exactly10!", 10, "exactly10!"),
        ("x" * 30, 20, "x" * 11 + "~" + hashlib.sha256(b"x" * 30).hexdigest()[:8]),
        (
            "y" * 30 + ".csv",
            24,
            "y" * 11 + "~" + hashlib.sha256(b"y" * 30 + b".csv").hexdigest()[:8] + ".csv",
        ),
    ],
)
def test_shorten(name: str, limit: int, expected: str) -> None:
    assert shorten(name, limit) == expected
    assert nbytes(shorten(name, limit)) <= limit


def test_shorten_treats_a_long_suffix_as_part_of_the_name() -> None:
    name = "report." + "z" * 40
    short = shorten(name, 30)
    assert nbytes(short) <= 30
    assert short.startswith("report.zzz") and "." not in short[7:]


def test_file_digest_reads_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # more than one block, not a multiple of it
    path.write_bytes(data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_digest(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
