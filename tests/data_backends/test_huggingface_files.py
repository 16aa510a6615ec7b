"""The served files of a Hugging Face dataset's rows: every path resolves to its row and kind, nothing else does,
iteration is in path order, and a large dataset costs a few bytes a row beyond its captions' text."""

from __future__ import annotations

import tracemalloc

import pytest

from simpletuner.plugins.data_backends.huggingface_files import RowFiles

pytestmark = pytest.mark.timeout(60)


def test_paths_resolve_to_their_rows_and_nothing_else_does() -> None:
    files = RowFiles([0, 7, 123456789], lambda row: {0: "png", 7: "webp"}.get(row, "jpg"),
                     lambda row: f"caption {row}" if row != 7 else "")
    assert list(files) == ["row-00000000.png", "row-00000000.txt", "row-00000007.webp", "row-123456789.jpg",
                           "row-123456789.txt"]
    assert len(files) == 5 and sorted(files) == list(files)
    assert [files[path] for path in files] == [(0, "image"), (0, "caption"), (7, "image"), (123456789, "image"),
                                               (123456789, "caption")]
    assert dict(files.captions) == {0: "caption 0", 123456789: "caption 123456789"}
    for other in ("row-00000007.txt", "row-00000007.png", "row-00000008.png", "row-0000007.webp", "row-7.webp",
                  "row-00000007", "row-0000000x.png", "row-０００００００7.webp", "../row-00000000.png",
                  "row-00000000.png/x", "cat.png", ""):
        assert other not in files and files.locate(other) is None, other
    with pytest.raises(KeyError):
        files["row-00000008.png"]
    with pytest.raises(KeyError):
        files.captions[7]
    assert list(files.with_extension("png"))[2] == "row-00000007.png"
    with pytest.raises(ValueError, match="ascending"):
        RowFiles([3, 2], lambda row: "png", lambda row: "")


def test_a_million_rows_cost_a_few_bytes_each_beyond_their_captions() -> None:
    rows = 1_000_000
    tracemalloc.start()
    try:
        files = RowFiles(range(0, 2 * rows, 2), lambda row: "png", lambda row: "")
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(files) == rows and files["row-01999998.png"] == (1999998, "image")
    # 8 bytes of row number, 1 of extension and a list slot for the (absent) caption; a dict held ~250 per file
    assert held / rows < 24, held / rows
