"""Listing a local dataset folder: every file once, in path order, with its size and modification time from one
``stat`` each; hidden names and links to folders left out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simpletuner.plugins.data_backends.local import LocalDataBackend

pytestmark = pytest.mark.timeout(60)


def make(root: Path, relative: str, data: bytes = b"x") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_paths_come_in_order_with_sizes_and_times(tmp_path: Path) -> None:
    # "a-b/…" sorts before "a/…" although folder "a" sorts before folder "a-b": the walk's order is checked
    for relative in ("a/x.png", "a-b/y.png", "a/b/z.png", "a.png", "B.PNG", "c/d/e/f.txt", "c/notes.md"):
        make(tmp_path, relative, relative.encode())
    make(tmp_path, ".hidden.png")
    make(tmp_path, ".cache/inside.png")
    (tmp_path / "linked").symlink_to(tmp_path / "a", target_is_directory=True)
    os.utime(tmp_path / "a.png", ns=(1_000_000_007, 1_700_000_000_123_456_789))

    listing = LocalDataBackend(tmp_path).list_stamped(extensions={"png", "txt"})
    expected = sorted(["a/x.png", "a-b/y.png", "a/b/z.png", "a.png", "B.PNG", "c/d/e/f.txt"])
    assert listing.paths == expected
    assert listing.sizes == [len(p) for p in expected]
    assert listing.stamps[expected.index("a.png")] == 1_700_000_000_123_456_789
    assert listing.stamps == [(tmp_path / p).stat().st_mtime_ns for p in expected]
    backend = LocalDataBackend(tmp_path)
    assert backend.list(extensions={"png", "txt"}) == expected
    assert backend.list("c") == ["c/d/e/f.txt", "c/notes.md"]
    assert backend.list_stamped("missing").paths == []


def test_a_large_folder_tree_lists_as_sorted_strings_do(tmp_path: Path) -> None:
    names = [f"{shard}/{index:05d}{suffix}" for shard in ("s-1", "s", "s_2", "s.3") for index in range(0, 300, 7)
             for suffix in (".jpg", ".txt")]
    for name in names:
        make(tmp_path, name)
    listing = LocalDataBackend(tmp_path).list_stamped(extensions={"jpg", "txt"})
    assert listing.paths == sorted(names) and len(listing.sizes) == len(listing.stamps) == len(names)
