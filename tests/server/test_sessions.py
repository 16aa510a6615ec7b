"""Setup, login, sessions, CSRF, throttling and passwords through the API."""

from __future__ import annotations

import threading

import falcon.testing

from simpletuner.ui.db.models import AuditEvent, Session, User
from simpletuner.ui.setup import issue_setup_token

from .conftest import PASSWORD, Client, Server, on_both_databases

pytestmark = on_both_databases

FIRST = {"username": "root", "email": "root@example.org", "password": PASSWORD}


def test_setup_status_and_first_admin(server: Server) -> None:
    client = server.client()
    status = client.get("/api/auth/setup/status").json
    assert status["needs_setup"] is True and status["token_required"] is False and "10 characters" in \
        status["password_policy"]
    assert client.post("/api/auth/setup/first-admin", {**FIRST, "password": "short"}).status_code == 400
    assert client.post("/api/auth/setup/first-admin", FIRST).status_code == 201
    assert client.post("/api/auth/setup/first-admin", {**FIRST, "username": "other"}).status_code == 409
    assert client.get("/api/auth/setup/status").json["needs_setup"] is False
    assert client.get("/setup").headers["location"] == "/login"


def test_first_admin_from_elsewhere_needs_the_setup_token(server: Server) -> None:
    remote = server.client(remote_addr="203.0.113.9")
    assert remote.get("/api/auth/setup/status").json["token_required"] is True
    token = issue_setup_token()
    assert token
    assert remote.post("/api/auth/setup/first-admin", FIRST).status_code == 403
    assert remote.post("/api/auth/setup/first-admin", {**FIRST, "setup_token": "wrong"}).status_code == 403
    assert User.select().count() == 0
    assert remote.post("/api/auth/setup/first-admin", {**FIRST, "setup_token": token}).status_code == 201


def test_concurrent_first_admin_requests_create_one_admin(server: Server) -> None:
    results: list[int] = []
    barrier = threading.Barrier(6)

    def attempt(i: int) -> None:
        client = falcon.testing.TestClient(server.app)
        barrier.wait()
        results.append(client.simulate_post("/api/auth/setup/first-admin",
                                            json={**FIRST, "username": f"admin{i}"}).status_code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201] + [409] * 5
    assert User.select().count() == 1


def test_login_me_logout(server: Server, admin: Client) -> None:
    me = admin.get("/api/auth/me").json
    assert me["username"] == "root" and me["levels"] == ["admin"] and "users.manage" in me["permissions"]
    assert admin.post("/api/auth/logout").status_code == 200
    assert admin.get("/api/auth/me").status_code == 401


def test_cookie_flags(server: Server) -> None:
    server.setup_admin()
    result = server.client().post("/api/auth/login", {"username": "root", "password": PASSWORD})
    cookie = result.cookies["st_session"]
    assert cookie.http_only and cookie.same_site == "Lax" and not cookie.secure and cookie.max_age is None
    remembered = server.client().post("/api/auth/login", {"username": "root", "password": PASSWORD,
                                                          "remember": True})
    assert remembered.cookies["st_session"].max_age == 30 * 86400
    # The database holds only the token's hash.
    assert not Session.select().where(Session.token_hash == cookie.value).exists()


def test_secure_cookie_under_tls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secure = Server(tmp_path, secure_cookies=True)
    secure.setup_admin()
    result = secure.client().post("/api/auth/login", {"username": "root", "password": PASSWORD})
    assert result.cookies["st_session"].secure


def test_unknown_user_and_wrong_password_answer_alike(server: Server, admin: Client) -> None:
    unknown = server.client().post("/api/auth/login", {"username": "nobody", "password": "x" * 12})
    wrong = server.client().post("/api/auth/login", {"username": "root", "password": "x" * 12})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json == wrong.json
    assert AuditEvent.select().where(AuditEvent.event == "login_failed").count() == 2


def test_throttling_slows_the_attacker_not_the_owner(server: Server, admin: Client) -> None:
    """The throttle's buckets on each database (the details, over real HTTP, are in test_login_throttle)."""
    attacker = server.client(remote_addr="198.51.100.7")
    for _ in range(server.settings.pair_free_failures + 1):
        assert attacker.post("/api/auth/login", {"username": "root", "password": "wrong-password"}).status_code == 401
    blocked = attacker.post("/api/auth/login", {"username": "root", "password": PASSWORD})
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "1"
    # The owner, from elsewhere, is not locked out by the attacker's failures.
    assert server.client(remote_addr="203.0.113.5").login("root").status_code == 200
    server.clock.now += 1
    assert attacker.post("/api/auth/login", {"username": "root", "password": "wrong-password"}).status_code == 401
    assert attacker.post("/api/auth/login", {"username": "root", "password": PASSWORD}).headers["retry-after"] == "2"
    # Per address: many accounts from one address.
    sprayer = server.client(remote_addr="198.51.100.8")
    for i in range(server.settings.address_free_failures + 1):
        sprayer.post("/api/auth/login", {"username": f"user{i}", "password": "wrong-password"})
    assert sprayer.post("/api/auth/login", {"username": "root", "password": PASSWORD}).status_code == 429


def test_forwarded_for_is_ignored_unless_from_a_trusted_proxy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ipaddress

    plain = Server(tmp_path / "a")
    plain.setup_admin()
    spoof = {"X-Forwarded-For": "10.9.9.9"}
    plain.client(remote_addr="198.51.100.7").post("/api/auth/login", {"username": "root", "password": "bad-pass-1"},
                                                  headers=spoof)
    assert AuditEvent.select().order_by(AuditEvent.id.desc()).first().ip == "198.51.100.7"
    proxied = Server(tmp_path / "b", trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    proxied.setup_admin()
    proxied.client().post("/api/auth/login", {"username": "root", "password": "bad-pass-1"},
                          headers={"X-Forwarded-For": "1.2.3.4, 10.9.9.9"})
    assert AuditEvent.select().order_by(AuditEvent.id.desc()).first().ip == "10.9.9.9"


def test_csrf_required_for_cookie_state_changes(server: Server, admin: Client) -> None:
    payload = {"name": "k"}
    assert admin.post("/api/apikeys", payload, csrf=False).status_code == 403
    assert admin.post("/api/apikeys", payload, csrf=False, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert admin.post("/api/apikeys", payload).status_code == 201
    cross = admin.post("/api/apikeys", payload, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403


def test_forged_and_expired_sessions(server: Server, admin: Client) -> None:
    forged = server.client()
    forged.cookie = "A" * 43
    assert forged.get("/api/auth/me").status_code == 401
    server.clock.now += 11 * 3600  # within the sliding lifetime: still valid, and the use extends it
    assert admin.get("/api/auth/me").status_code == 200
    server.clock.now += 11 * 3600
    assert admin.get("/api/auth/me").status_code == 200
    server.clock.now += 13 * 3600
    assert admin.get("/api/auth/me").status_code == 401


def test_change_password_and_admin_reset(server: Server, admin: Client) -> None:
    user = server.user(admin, "rita", ["researcher"])
    other = server.client()
    other.login("rita")
    new = "another good password"
    assert user.post("/api/auth/password", {"current_password": "wrong", "new_password": new}).status_code == 403
    assert user.post("/api/auth/password", {"current_password": PASSWORD, "new_password": "rita"}).status_code == 400
    assert user.post("/api/auth/password", {"current_password": PASSWORD, "new_password": new}).status_code == 200
    assert other.get("/api/auth/me").status_code == 401  # other sessions ended
    assert user.get("/api/auth/me").status_code == 200
    assert server.client().login("rita", new).status_code == 200
    rita_id = User.get(User.username == "rita").id
    assert admin.post(f"/api/users/{rita_id}/password", {"password": PASSWORD}).status_code == 200
    assert user.get("/api/auth/me").status_code == 401
    assert server.client().login("rita").status_code == 200


def test_registration_is_off_by_default(server: Server, admin: Client) -> None:
    body = {"username": "newbie", "email": "n@example.org", "password": PASSWORD}
    assert server.client().post("/api/auth/register", body).status_code == 403
    assert admin.patch("/api/settings/registration", {"enabled": True, "default_level": "researcher"}).json == {
        "enabled": True, "default_level": "researcher"}
    assert server.client().post("/api/auth/register", body).json["user"]["levels"] == ["researcher"]
