"""Uploads never write through, or replace, a symbolic link already in the datasets folder (over real HTTP)."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_http import LiveHttp, serve

from .conftest import PASSWORD, UiServer

pytestmark = pytest.mark.timeout(120)

CAPTION = b"a photo of a cat"


@pytest.fixture
def live(ui: UiServer) -> Iterator[tuple[LiveHttp, dict[str, str], Path]]:
    """The app over HTTP, an admin's session and ``datasets/mine``."""
    ui.admin()
    with serve(ui.app) as http:
        auth = http.log_in("root", PASSWORD)
        assert http.json("POST", "/api/datasets/folders", {"name": "mine"}, auth).status == 201
        yield http, auth, ui.workspace.datasets_dir / "mine"


def archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        for name, data in files.items():
            handle.writestr(name, data)
    return buffer.getvalue()


def upload(http: LiveHttp, auth: dict[str, str], name: str, body: bytes, path: str = "mine") -> tuple[int, str]:
    answer = http.request("PUT", f"/api/datasets/upload?path={path}&name={name}", body,
                          {**auth, "Content-Type": "application/octet-stream"})
    return answer.status, answer.json.get("description", "")


def test_an_archive_never_writes_through_a_link_to_a_folder(live: tuple[LiveHttp, dict[str, str], Path],
                                                             tmp_path: Path) -> None:
    http, auth, mine = live
    outside = tmp_path / "outside"
    outside.mkdir()
    (mine / "link").symlink_to(outside)
    status, message = upload(http, auth, "set.zip", archive({"ok.txt": CAPTION, "link/x.txt": CAPTION}))
    assert status == 409 and "'link' in this folder is a symbolic link" in message, message
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in mine.iterdir()) == ["link"]  # all or nothing: ok.txt was not placed either

    (mine / "deeper").mkdir()
    (mine / "deeper" / "inner").symlink_to(outside)
    status, message = upload(http, auth, "set.zip", archive({"deeper/inner/more/x.txt": CAPTION}))
    assert status == 409 and "'deeper/inner' in this folder is a symbolic link" in message, message
    assert list(outside.iterdir()) == []


def test_a_link_in_place_of_a_file_is_never_replaced(live: tuple[LiveHttp, dict[str, str], Path],
                                                     tmp_path: Path) -> None:
    http, auth, mine = live
    target = tmp_path / "kept.txt"
    target.write_bytes(b"precious")
    (mine / "a.txt").symlink_to(target)
    (mine / "dangling.txt").symlink_to(tmp_path / "nothing-here.txt")
    for name in ("a.txt", "dangling.txt"):
        status, message = upload(http, auth, name, CAPTION)
        assert status == 409 and f"'{name}' in this folder is a symbolic link" in message, message
        status, message = upload(http, auth, "set.zip", archive({name: CAPTION}))
        assert status == 409 and "symbolic link" in message, message
    assert os.readlink(mine / "a.txt") == str(target) and target.read_bytes() == b"precious"
    assert os.readlink(mine / "dangling.txt") == str(tmp_path / "nothing-here.txt")
    assert not (tmp_path / "nothing-here.txt").exists()
    # staging files are gone too
    assert sorted(p.name for p in mine.iterdir()) == ["a.txt", "dangling.txt"]


def test_a_folder_name_taken_by_a_link_is_refused(live: tuple[LiveHttp, dict[str, str], Path],
                                                  tmp_path: Path) -> None:
    http, auth, mine = live
    (mine / "gone").symlink_to(tmp_path / "missing")
    answer = http.json("POST", "/api/datasets/folders", {"parent": "mine", "name": "gone"}, auth)
    assert answer.status == 409 and not (tmp_path / "missing").exists()


def test_archives_with_clashing_entries_are_refused_and_plain_ones_land(live: tuple[LiveHttp, dict[str, str],
                                                                                    Path]) -> None:
    http, auth, mine = live
    status, message = upload(http, auth, "set.zip", archive({"a.txt": CAPTION, "a.txt/b.txt": CAPTION}))
    assert status == 400 and "'a.txt' is a file, but other entries put files inside it" in message
    status, message = upload(http, auth, "set.zip", archive({"sub/one.txt": CAPTION, "two.txt": CAPTION}))
    assert status == 201, message
    assert (mine / "sub" / "one.txt").read_bytes() == CAPTION and (mine / "two.txt").read_bytes() == CAPTION
    status, message = upload(http, auth, "set.zip", archive({"sub/one.txt": CAPTION}))
    assert status == 409 and "'sub/one.txt' already exists" in message
    assert sorted(p.name for p in mine.iterdir()) == ["sub", "two.txt"]
