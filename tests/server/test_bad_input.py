"""Hostile input is refused with the right status and nothing is stored."""

from __future__ import annotations

import pytest

from simpletuner.ui.db.models import ApiKey, AuthProviderConfig, Level, User

from .conftest import PASSWORD, Client, Server

HOSTILE = ["'; DROP TABLE users; --", "1' OR '1'='1", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
           "robert\x00", "a\nb"]


def counts() -> tuple[int, int, int, int]:
    return User.select().count(), Level.select().count(), ApiKey.select().count(), AuthProviderConfig.select().count()


def test_malformed_json_wrong_type_and_oversized_bodies(server: Server, admin: Client) -> None:
    before = counts()
    raw = admin.request("POST", "/api/users", body="{not json", headers={"Content-Type": "application/json"})
    assert raw.status_code == 400
    form = admin.request("POST", "/api/users", body="username=x", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    array = admin.request("POST", "/api/levels", body="[1, 2]", headers={"Content-Type": "application/json"})
    assert array.status_code == 400
    huge = admin.post("/api/levels", {"name": "big", "description": "x" * 70000, "permissions": []})
    assert huge.status_code == 413
    unknown = admin.post("/api/levels", {"name": "ok", "permissions": [], "is_admin": True})
    assert unknown.status_code == 400 and "is_admin" in unknown.json["description"]
    anonymous_form = server.client().request("POST", "/api/auth/login", body="username=root&password=x",
                                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert anonymous_form.status_code == 415
    assert counts() == before


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_in_every_text_field(server: Server, admin: Client, value: str) -> None:
    before = counts()
    attempts = [
        ("/api/users", {"username": value, "email": "a@example.org", "password": PASSWORD, "levels": ["viewer"]}),
        ("/api/users", {"username": "okname", "email": value, "password": PASSWORD, "levels": ["viewer"]}),
        ("/api/users", {"username": "okname", "email": "a@example.org", "display_name": value, "password": PASSWORD,
                        "levels": ["viewer"]}),
        ("/api/users", {"username": "okname", "email": "a@example.org", "password": PASSWORD, "levels": [value]}),
        ("/api/levels", {"name": value, "permissions": []}),
        ("/api/levels", {"name": "okname", "description": value, "permissions": []}),
        ("/api/levels", {"name": "okname", "permissions": [value]}),
        ("/api/apikeys", {"name": value}),
        ("/api/apikeys", {"name": "ok", "scopes": [value]}),
        ("/api/auth-providers", {"name": value, "type": "local"}),
        ("/api/auth/setup/first-admin", {"username": value, "email": "a@example.org", "password": PASSWORD}),
    ]
    for path, body in attempts:
        result = admin.post(path, body)
        assert result.status_code in (400, 409), (path, body, result.status)
    assert admin.patch(f"/api/users/{User.get().id}", {"display_name": value}).status_code == 400
    assert admin.post("/api/auth/login", {"username": value, "password": value}).status_code in (400, 401)
    assert counts() == before
    assert User.get().display_name is None


def test_path_parameters_are_validated(admin: Client) -> None:
    assert admin.get("/api/users/abc").status_code == 404
    assert admin.get("/api/users/999").status_code == 404
    assert admin.delete("/api/levels/%27%3B%20DROP%20TABLE%20levels").status_code == 404
    assert admin.get("/api/audit?limit=-1").status_code == 400


def test_open_redirects_are_refused(server: Server, admin: Client) -> None:
    anonymous = server.client()
    assert anonymous.get("/admin/users").headers["location"] == "/login?next=%2Fadmin%2Fusers"
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        assert admin.get("/login", params={"next": target}).headers["location"] == "/"
