"""Committed text names no path of this machine."""

from __future__ import annotations

from pathlib import Path

from benchmark.paths import REPO, display_path, in_repo, scrub_paths, tidy


def test_scrub_paths_makes_committed_text_portable(tmp_path) -> None:
    (tmp_path / "r.md").write_text(f"{REPO}/results/x {Path.home()}/.cache/y /tmp/pytest-1/z "
                                   "results/tmp/keep\n")
    scrub_paths(tmp_path)
    assert (tmp_path / "r.md").read_text() == "./results/x ~/.cache/y <tmp> results/tmp/keep\n"


def test_display_path_and_repository_relative_paths(tmp_path, monkeypatch) -> None:
    assert display_path(Path.home() / "a" / "b") == "~/a/b"
    assert display_path("/opt/x") == "/opt/x"
    monkeypatch.chdir(tmp_path)  # from elsewhere, a committed file is found in the repository
    assert in_repo("results/checkpoints/resnet20_cifar10.pt") == str(
        REPO / "results/checkpoints/resnet20_cifar10.pt")
    assert in_repo("no/such/file") == "no/such/file"


def test_the_folder_beside_the_repository_is_written_relative() -> None:
    """The default data root ``../shared/data`` (and anything read from it) stays relative."""
    data = REPO.parent / "shared" / "data"
    assert display_path(data) == "../shared/data"
    assert tidy({"root": str(data), "files": [f"local:{data}/MNIST/raw/x.gz"]}) == {
        "root": "../shared/data", "files": ["local:../shared/data/MNIST/raw/x.gz"]}


def test_manifest_paths_stay_usable() -> None:
    """A manifest's config is read back by studies: a temporary cache folder must stay a path."""
    assert tidy({"cache_dir": "/tmp/pytest-1/cache"}) == {"cache_dir": "/tmp/pytest-1/cache"}
