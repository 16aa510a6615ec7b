"""Server settings fixed at start-up (flags of ``simpletuner server``), injected into the app."""

from __future__ import annotations

import ipaddress

import attrs

from simpletuner.core.errors import SimpleTunerError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str | None) -> tuple[Network, ...]:
    """``--forwarded-allow-ips``: comma-separated addresses or networks (``127.0.0.1,10.0.0.0/8``); ``*`` is refused
    because it would let any client choose the address that throttling and the audit log see."""
    networks: list[Network] = []
    for part in filter(None, (p.strip() for p in (value or "").split(","))):
        if part == "*":
            raise SimpleTunerError("--forwarded-allow-ips '*' would trust every client; list the proxy addresses")
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise SimpleTunerError(
                f"--forwarded-allow-ips: {part!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
            ) from None
    return tuple(networks)


@attrs.frozen(kw_only=True)
class ServerSettings:
    """How the app behaves; the defaults suit production, tests lower ``bcrypt_rounds``.

    Attributes:
        secure_cookies: mark cookies Secure (set when serving TLS).
        trusted_proxies: peers whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` headers are believed.
        bcrypt_rounds: cost of password hashes.
        session_hours: idle lifetime of an ordinary session; each use extends it.
        remember_days: lifetime of a "remember me" session.
        pair_free_failures: failed logins to one account from one address (or from one known device) before each
            further attempt has to wait.
        address_free_failures: failed logins from one address, whatever the accounts, before each further attempt
            from it has to wait. Loopback is exempt: SSH tunnels and undeclared local proxies make every client
            loopback, and one of them would slow all the others.
        failure_delay_s: the first wait; it doubles with each further failure...
        max_failure_delay_s: ...up to this.
        failure_window_s: a bucket of failures is forgotten once it stayed quiet this long after its last wait.
        known_device_days: lifetime of the "known device" cookie a successful login sets for its account: a
            browser holding it is throttled on its own failures only, so failures from elsewhere never keep the
            account's owner out.
        max_body_bytes: largest JSON body accepted.
        touch_interval_s: the least time between two writes of a key's last-used time or a session's expiry.
    """

    secure_cookies: bool = False
    trusted_proxies: tuple[Network, ...] = ()
    bcrypt_rounds: int = 12
    session_hours: float = 12.0
    remember_days: float = 30.0
    pair_free_failures: int = 3
    address_free_failures: int = 20
    failure_delay_s: float = 1.0
    max_failure_delay_s: float = 900.0
    failure_window_s: float = 900.0
    known_device_days: float = 365.0
    max_body_bytes: int = 64 * 1024
    touch_interval_s: float = 60.0
    pending_login_s: float = 600.0
