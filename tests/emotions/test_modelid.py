"""emotions.modelid.model_identity: one model spelled differently (trailing slash, relative or
absolute folder, a symlink to it, a hub id with or without ``@main``) has one identity, and
different models never share one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emotions.modelid import model_identity

HUB = "AnasAlokla/multilingual_go_emotions"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``<tmp>/models/bert``, with the working directory at ``<tmp>``."""
    d = tmp_path / "models" / "bert"
    d.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return d


def test_spellings_of_one_folder_agree(folder: Path) -> None:
    expected = "dir:" + os.path.realpath(folder)
    spellings = [
        str(folder),
        f"{folder}/",
        f"{folder}//",
        "models/bert",
        "models/bert/",
        "./models/bert",
        "models/../models/bert",
        f"  {folder}  ",
    ]
    assert {model_identity(s) for s in spellings} == {expected}


def test_a_symlinked_folder_is_the_folder(folder: Path, tmp_path: Path) -> None:
    link = tmp_path / "current"
    link.symlink_to(folder)
    assert model_identity(str(link)) == model_identity(str(folder))
    assert model_identity("current/") == model_identity(str(folder))


def test_different_folders_differ(folder: Path, tmp_path: Path) -> None:
    other = tmp_path / "models" / "xlmr"
    other.mkdir()
    assert model_identity(str(other)) != model_identity(str(folder))


def test_hub_id_with_or_without_main() -> None:
    expected = f"hub:{HUB}@main"
    for spelling in (HUB, f"{HUB}@main", f"{HUB}/", f" {HUB} ", f"{HUB}@"):
        assert model_identity(spelling) == expected, spelling


def test_hub_revisions_and_names_differ() -> None:
    assert model_identity(f"{HUB}@v1.1") == f"hub:{HUB}@v1.1"
    assert model_identity(f"{HUB}@v1.1") != model_identity(HUB)
    assert model_identity(f"{HUB}_V1.1") != model_identity(HUB)
    assert model_identity("bert-base-multilingual-cased") == "hub:bert-base-multilingual-cased@main"


def test_an_existing_folder_wins_over_a_hub_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local copy saved under the hub id's name is that folder, wherever it is."""
    local = tmp_path / "AnasAlokla" / "multilingual_go_emotions"
    local.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert model_identity(HUB) == "dir:" + os.path.realpath(local)


def test_a_missing_folder_is_normalised_as_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    expected = "dir:" + os.path.join(os.getcwd(), "gone", "model")
    for spelling in (
        "./gone/model",
        "gone/model/x/..",
        f"{os.getcwd()}/gone/model/",
        "gone//model",
    ):
        assert model_identity(spelling) == expected, spelling
    assert model_identity("/opt/models/a/b") == "dir:/opt/models/a/b"  # not an owner/name id
