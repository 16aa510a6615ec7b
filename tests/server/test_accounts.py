"""Users, levels and API keys through the API."""

from __future__ import annotations

from simpletuner.ui.db.models import ApiKey, User

from .conftest import PASSWORD, Client, Server, on_both_databases

pytestmark = on_both_databases


def uid(name: str) -> int:
    return User.get(User.username == name).id


def test_user_lifecycle_and_last_admin_rule(server: Server, admin: Client) -> None:
    server.user(admin, "rita", ["researcher"])
    root = uid("root")
    assert admin.patch(f"/api/users/{root}", {"levels": ["viewer"]}).status_code == 409
    assert admin.patch(f"/api/users/{root}", {"active": False}).status_code == 409
    assert admin.delete(f"/api/users/{root}").status_code == 409
    assert admin.patch(f"/api/users/{uid('rita')}", {"levels": ["admin"]}).json["user"]["levels"] == ["admin"]
    assert admin.patch(f"/api/users/{root}", {"levels": ["lead"]}).status_code == 200  # rita is admin now
    rita = server.client()
    rita.login("rita")
    assert rita.patch(f"/api/users/{uid('rita')}", {"levels": ["viewer"]}).status_code == 409
    assert rita.patch(f"/api/users/{root}", {"active": False}).status_code == 200
    assert server.client().login("root").status_code == 401  # deactivated
    assert rita.delete(f"/api/users/{root}").status_code == 200
    assert rita.get("/api/users").json["users"][0]["username"] == "rita"


def test_levels_builtin_and_custom(server: Server, admin: Client) -> None:
    names = [lvl["name"] for lvl in admin.get("/api/levels").json["levels"]]
    assert names[:4] == ["viewer", "researcher", "lead", "admin"]
    assert admin.delete("/api/levels/viewer").status_code == 409
    assert admin.patch("/api/levels/admin", {"permissions": []}).status_code == 409
    assert admin.post("/api/levels", {"name": "auditor", "permissions": ["audit.view", "nope"]}).status_code == 400
    created = admin.post("/api/levels", {"name": "auditor", "description": "Reads the log",
                                         "permissions": ["audit.view", "config.view"]})
    assert created.status_code == 201
    auditor = server.user(admin, "aud", ["auditor"])
    assert auditor.get("/api/audit").status_code == 200
    assert auditor.get("/api/users").status_code == 403
    assert admin.delete("/api/levels/auditor").status_code == 409  # still held
    admin.patch("/api/levels/auditor", {"permissions": ["config.view"]})
    assert auditor.get("/api/audit").status_code == 403  # permissions apply at once


def test_api_keys_shown_once_hashed_scoped_and_revocable(server: Server, admin: Client) -> None:
    rita = server.user(admin, "rita", ["researcher"])
    created = rita.post("/api/apikeys", {"name": "laptop", "expires_days": 30}).json
    key = created["key"]
    assert key.startswith("st_") and len(key) >= 35
    row = ApiKey.get_by_id(created["api_key"]["id"])
    assert key not in (row.key_hash, row.prefix) and len(row.key_hash) == 64
    assert key not in rita.get("/api/apikeys").text
    bot = server.client()
    bot.api_key = key
    assert bot.get("/api/auth/me").json["username"] == "rita"
    assert bot.get("/api/training/status").json["status"] == "idle"
    # A key never grants more than its owner: scopes beyond them are refused, and demotion shrinks keys.
    assert rita.post("/api/apikeys", {"name": "x", "scopes": ["users.manage"]}).status_code == 400
    scoped = rita.post("/api/apikeys", {"name": "ro", "scopes": ["config.view"]}).json["key"]
    limited = server.client()
    limited.api_key = scoped
    assert limited.get("/api/auth/me").json["permissions"] == ["config.view"]
    admin.patch(f"/api/users/{uid('rita')}", {"levels": ["viewer"]})
    assert "job.start" not in bot.get("/api/auth/me").json["permissions"]
    # Revoked and expired keys are refused.
    assert rita.delete(f"/api/apikeys/{created['api_key']['id']}").status_code == 403  # viewer lost apikeys.own
    assert admin.delete(f"/api/apikeys/{created['api_key']['id']}").status_code == 200
    assert bot.get("/api/auth/me").status_code == 401
    server.clock.now += 400 * 86400
    assert admin.login("root").status_code == 200  # the old session expired meanwhile
    expiring = admin.post("/api/apikeys", {"name": "short", "expires_days": 1}).json["key"]
    late = server.client()
    late.api_key = expiring
    assert late.get("/api/auth/me").status_code == 200
    server.clock.now += 86401
    assert late.get("/api/auth/me").status_code == 401


def test_last_used_is_written_at_most_once_a_minute(server: Server, admin: Client) -> None:
    key = admin.post("/api/apikeys", {"name": "ci"}).json["key"]
    bot = server.client()
    bot.api_key = key
    writes = []
    original = server.database.execute_sql

    def counting(sql, params=None, *a, **kw):  # type: ignore[no-untyped-def]
        if sql.startswith('UPDATE "api_keys"'):
            writes.append(sql)
        return original(sql, params, *a, **kw)

    server.database.execute_sql = counting  # type: ignore[method-assign]
    try:
        for _ in range(50):
            assert bot.get("/api/training/status").status_code == 200
        assert len(writes) == 1
        server.clock.now += 61
        bot.get("/api/training/status")
        assert len(writes) == 2
    finally:
        server.database.execute_sql = original  # type: ignore[method-assign]


def test_admin_creates_keys_for_others_and_audit_records_it(server: Server, admin: Client) -> None:
    server.user(admin, "rita", ["viewer"])
    made = admin.post("/api/apikeys", {"name": "for rita", "user_id": uid("rita")})
    assert made.status_code == 201 and made.json["api_key"]["owner"] == "rita"
    events = [e["event"] for e in admin.get("/api/audit").json["events"]]
    assert {"apikey_created", "user_created", "login", "first_admin_created"} <= set(events)
    assert PASSWORD not in admin.get("/api/audit").text
