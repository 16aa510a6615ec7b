"""Dataset uploads and the directory browser: unsafe archives refused with a clear message and nothing left behind;
paths outside the datasets folder (also through symlinks) refused."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from simpletuner.ui.workflow.uploads import UploadLimits

from .conftest import Client, UiServer


def png(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def zip_of(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def put(client: Client, folder: str, name: str, body: bytes):  # type: ignore[no-untyped-def]
    return client.request("PUT", f"/api/datasets/upload?path={folder}&name={name}", body=body,
                          headers={"Content-Type": "application/octet-stream"})


def leftovers(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def folder(ui: UiServer, admin: Client) -> Path:
    result = admin.post("/api/datasets/folders", {"name": "cats"})
    assert result.status_code == 201, result.text
    return ui.workspace.datasets_dir / "cats"


def test_zip_upload_extracts_images_and_captions(ui: UiServer, admin: Client, folder: Path) -> None:
    body = zip_of([("a.png", png()), ("a.txt", b"a red cat"), ("sub/b.png", png((32, 32))), ("sub/b.txt", b"small")])
    result = put(admin, "cats", "set.zip", body)
    assert result.status_code == 201, result.text
    assert sorted(result.json["files"]) == ["a.png", "a.txt", "sub/b.png", "sub/b.txt"]
    assert leftovers(folder) == ["a.png", "a.txt", "sub/b.png", "sub/b.txt"]
    scan = admin.get("/api/datasets/scan?path=cats&resolution=48&resolution_type=pixel&caption_strategy=textfile")
    assert scan.json["images"] == 2 and scan.json["too_small"] == 1 and scan.json["usable"] == 1
    assert scan.json["preview"] == [{"image": "cats/a.png", "caption": "a red cat", "width": 64, "height": 64}]
    image = admin.get("/api/datasets/file?path=cats/a.png")
    assert image.status_code == 200 and image.content == (folder / "a.png").read_bytes()


@pytest.mark.parametrize(("entries", "status", "words"), [
    ([("../evil.png", png())], 400, "leaves its folder"),
    ([("/etc/evil.png", png())], 400, "absolute path"),
    ([("ok.png", png()), ("C:/evil.png", png())], 400, "absolute path"),
    ([(symlink_entry(), b"/etc/passwd")], 400, "link or device"),
    ([("run.sh", b"#!/bin/sh\n")], 415, "neither an image nor a caption"),
    ([("fake.png", b"<html>not an image</html>")], 415, "content does not match"),
    ([("bomb.txt", b"0" * (8 * 1024 * 1024))], 413, "zip bomb"),
])
def test_unsafe_archives_are_refused_and_leave_nothing(admin: Client, folder: Path, entries: list, status: int,
                                                        words: str) -> None:
    result = put(admin, "cats", "bad.zip", zip_of(entries))
    assert result.status_code == status, result.text
    assert words in result.json["description"]
    assert leftovers(folder.parent) == []  # no staging file, no partial extraction


def test_oversized_file_and_wrong_type_are_refused(ui: UiServer, admin: Client, folder: Path) -> None:
    upload = next(r.resource for r in ui.app.routes if r.template == "/api/datasets/upload")
    upload.limits = UploadLimits(max_file_bytes=10_000)
    big = put(admin, "cats", "big.png", png() + b"\0" * 20_000)
    assert big.status_code == 413 and "at most 10000" in big.json["description"]
    wrong = put(admin, "cats", "notes.exe", b"MZ")
    assert wrong.status_code == 415 and "unsupported type" in wrong.json["description"]
    sneaky = put(admin, "cats", "..%2Fx.png", png())
    assert sneaky.status_code == 400
    many = zip_of([(f"{i}.txt", b"x") for i in range(5)])
    upload.limits = UploadLimits(max_files=3)
    assert "at most 3" in put(admin, "cats", "many.zip", many).json["description"]
    assert leftovers(folder.parent) == []


def test_browser_is_confined_to_the_datasets_folder(ui: UiServer, admin: Client, folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "x.png").write_bytes(png())
    (folder / "escape").symlink_to(outside)
    listing = admin.get("/api/datasets/browse").json
    assert [f["name"] for f in listing["folders"]] == ["cats"] and listing["parent"] is None
    assert admin.get("/api/datasets/browse?path=cats").json["folders"] == []  # the link leads outside: hidden
    for path in ("..", "/etc", "cats/../..", "cats/escape", str(outside)):
        result = admin.get(f"/api/datasets/browse?path={path}")
        assert result.status_code == 403, path
        assert "outside the datasets folder" in result.json["description"] or "absolute" in result.json["description"]
    assert admin.get("/api/datasets/file?path=cats/escape/x.png").status_code == 403
    assert put(admin, "cats/escape", "y.png", png()).status_code == 403
    assert admin.post("/api/datasets/folders", {"parent": "..", "name": "x"}).status_code == 403
    assert not (outside / "y.png").exists()


def test_viewer_browses_but_cannot_upload(ui: UiServer, admin: Client, folder: Path) -> None:
    viewer = ui.user(admin, "vera", ["viewer"])
    assert viewer.get("/api/datasets/browse").status_code == 200
    assert put(viewer, "cats", "a.png", png()).status_code == 403
    assert viewer.post("/api/datasets/folders", {"name": "dogs"}).status_code == 403
