"""Login throttling over real HTTP: an attacker is slowed with doubling waits, per account and address, while the
account's owner is never locked out; the known-device cookie exempts only its own account."""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from live_http import LiveHttp, serve

from simpletuner.ui.auth.devices import cookie_name

from .conftest import PASSWORD, Server

pytestmark = pytest.mark.timeout(120)

ATTACKER, OWNER, ELSEWHERE = "198.51.100.7", "203.0.113.5", "203.0.113.99"
WRONG = "wrong-password"


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Server, LiveHttp]]:
    """The app behind a trusted proxy on loopback, so ``X-Forwarded-For`` gives each test client its address."""
    server = Server(tmp_path, trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    server.setup_admin()
    with serve(server.app) as live:
        yield server, live
    server.database.close()


def attempt(live: LiveHttp, username: str, password: str, address: str | None = None,
            cookie: str | None = None) -> tuple[int, int | None, dict[str, str]]:
    """(status, Retry-After, cookies set) of one login."""
    headers = {"Content-Type": "application/json"}
    if address:
        headers["X-Forwarded-For"] = address
    if cookie:
        headers["Cookie"] = cookie
    answer = live.request("POST", "/api/auth/login", json.dumps({"username": username, "password": password}),
                          headers)
    retry = answer.headers.get("retry-after")
    return answer.status, int(retry) if retry else None, dict(c.split(";")[0].split("=", 1) for c in answer.cookies)


def device_cookie(live: LiveHttp, username: str, address: str) -> str:
    """Log in and return the known-device cookie the login sets, as a Cookie header."""
    status, _, cookies = attempt(live, username, PASSWORD, address)
    assert status == 200
    name = cookie_name(username)
    return f"{name}={cookies[name]}"


def test_an_attacker_waits_longer_after_each_failure_and_the_owner_still_logs_in(
        proxied: tuple[Server, LiveHttp]) -> None:
    server, live = proxied
    known = device_cookie(live, "root", OWNER)
    for _ in range(server.settings.pair_free_failures):
        assert attempt(live, "root", WRONG, ATTACKER)[:2] == (401, None)
    waits = []
    for _ in range(5):
        assert attempt(live, "root", WRONG, ATTACKER)[0] == 401  # checked, and the wait begins
        status, wait, _ = attempt(live, "root", PASSWORD, ATTACKER)  # even the right password waits its turn
        assert status == 429
        waits.append(wait)
        server.clock.now += wait  # type: ignore[operator]
    assert waits == [1, 2, 4, 8, 16]

    # the owner: from their known browser, from a new browser elsewhere, and again from the known one
    assert attempt(live, "root", PASSWORD, OWNER, known)[0] == 200
    assert attempt(live, "root", PASSWORD, ELSEWHERE)[0] == 200
    assert attempt(live, "root", WRONG, ATTACKER)[0] == 401  # still slowed: the owner's logins reset nothing of it
    assert attempt(live, "root", PASSWORD, ATTACKER)[:2] == (429, 32)


def test_waits_stop_doubling_at_the_cap_and_quiet_buckets_are_forgotten(proxied: tuple[Server, LiveHttp]) -> None:
    server, live = proxied
    settings = server.settings
    for _ in range(settings.pair_free_failures + 20):
        status, wait, _ = attempt(live, "root", WRONG, ATTACKER)
        if status == 429:
            server.clock.now += wait  # type: ignore[operator]
            assert attempt(live, "root", WRONG, ATTACKER)[0] == 401
    status, wait, _ = attempt(live, "root", WRONG, ATTACKER)
    assert status == 429 and wait == settings.max_failure_delay_s
    server.clock.now += settings.max_failure_delay_s + settings.failure_window_s
    assert attempt(live, "root", PASSWORD, ATTACKER)[0] == 200


def test_the_known_device_cookie_exempts_only_its_own_account(proxied: tuple[Server, LiveHttp]) -> None:
    server, live = proxied
    admin = live.log_in("root", PASSWORD)
    created = live.json("POST", "/api/users", {"username": "rita", "email": "rita@example.org", "password": PASSWORD,
                                               "levels": ["researcher"]}, admin)
    assert created.status == 201, created.text
    roots = device_cookie(live, "root", OWNER)
    for _ in range(server.settings.pair_free_failures + 1):
        assert attempt(live, "rita", WRONG, OWNER)[0] == 401
    assert attempt(live, "rita", PASSWORD, OWNER, roots)[0] == 429  # root's cookie says nothing about rita

    name, value = roots.split("=", 1)
    payload, signature = value.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload))
    forged = base64.urlsafe_b64encode(json.dumps({**data, "a": "rita"}).encode()).decode()
    for cookie in (f"{cookie_name('rita')}={value}",  # root's cookie under rita's name
                   f"{cookie_name('rita')}={forged}.{signature}",  # rebound to rita without the server's key
                   f"{cookie_name('rita')}=garbage"):
        assert attempt(live, "rita", PASSWORD, OWNER, cookie)[0] == 429
    assert attempt(live, "root", PASSWORD, OWNER, roots)[0] == 200  # root is not slowed by rita's failures


def test_the_device_cookie_is_httponly_strict_and_sent_only_to_logins(proxied: tuple[Server, LiveHttp]) -> None:
    _, live = proxied
    answer = live.json("POST", "/api/auth/login", {"username": "root", "password": PASSWORD})
    header = next(c for c in answer.cookies if c.startswith(cookie_name("root")))
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")[1:]}
    assert "httponly" in attributes and attributes["path"] == "Path=/api/auth"
    assert attributes["samesite"] == "SameSite=Strict" and attributes["max-age"] == f"Max-Age={365 * 86400}"


def test_known_devices_fail_on_their_own_account(proxied: tuple[Server, LiveHttp]) -> None:
    """A known browser's own failures slow that browser, not the owner's other ones."""
    server, live = proxied
    laptop, phone = device_cookie(live, "root", OWNER), device_cookie(live, "root", OWNER)
    assert laptop != phone
    for _ in range(server.settings.pair_free_failures + 1):
        assert attempt(live, "root", WRONG, OWNER, laptop)[0] == 401
    assert attempt(live, "root", PASSWORD, OWNER, laptop)[0] == 429
    assert attempt(live, "root", PASSWORD, OWNER, phone)[0] == 200


def test_an_address_spraying_many_accounts_is_slowed_but_loopback_is_not_pooled(tmp_path: Path) -> None:
    server = Server(tmp_path / "proxied", trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    server.setup_admin()
    with serve(server.app) as live:
        for index in range(server.settings.address_free_failures):
            assert attempt(live, f"user{index}", WRONG, ATTACKER)[0] == 401
        assert attempt(live, "nobody", WRONG, ATTACKER)[0] == 401
        assert attempt(live, "root", PASSWORD, ATTACKER)[:2] == (429, 1)
        assert attempt(live, "root", PASSWORD, OWNER)[0] == 200
        v6 = ["2001:db8:1:2::10", "2001:db8:1:2::99"]  # one /64: one machine
        for index in range(server.settings.address_free_failures + 1):
            assert attempt(live, f"user{index}", WRONG, v6[index % 2])[0] == 401
        assert attempt(live, "root", PASSWORD, "2001:db8:1:2::1234")[0] == 429
        assert attempt(live, "root", PASSWORD, "2001:db8:1:3::1")[0] == 200
    server.database.close()

    # SSH tunnels and undeclared proxies: every client is loopback, so loopback has no address bucket
    tunnel = Server(tmp_path / "tunnel")
    tunnel.setup_admin()
    with serve(tunnel.app) as live:
        for index in range(tunnel.settings.address_free_failures + 5):
            assert attempt(live, f"user{index}", WRONG)[0] == 401
        assert attempt(live, "root", PASSWORD)[0] == 200
        # hammering one account from loopback slows new browsers for it, never its known ones
        known = device_cookie(live, "root", "")
        for _ in range(tunnel.settings.pair_free_failures + 1):
            assert attempt(live, "root", WRONG)[0] == 401
        assert attempt(live, "root", PASSWORD)[0] == 429
        assert attempt(live, "root", PASSWORD, cookie=known)[0] == 200
    tunnel.database.close()


def test_parallel_guesses_past_the_free_failures_get_one_turn(proxied: tuple[Server, LiveHttp]) -> None:
    server, live = proxied
    for _ in range(server.settings.pair_free_failures):
        assert attempt(live, "root", WRONG, ATTACKER)[0] == 401
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(lambda _: attempt(live, "root", WRONG, ATTACKER)[0], range(8)))
    assert statuses == [401] + [429] * 7
