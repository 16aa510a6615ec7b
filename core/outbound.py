"""Which addresses the server may connect to on behalf of a request: the admin's outbound policy.

A connection test or a remote dataset scan connects wherever the request says. Without a check, anyone allowed to
run one could reach services that trust their network — a loopback database, a cloud metadata endpoint
(169.254.169.254), a router's admin page — and read their answers back. So, by default, only public addresses are
reachable. An admin allows more with the policy's ``allow_private`` (private networks: 10/8, 172.16/12, 192.168/16,
100.64/10, fc00::/7) or ``allowed_hosts`` (names, ``name:port``, addresses or networks such as ``10.0.0.0/8``), the
only way to allow loopback or link-local addresses.

Every address a name resolves to is checked, and the connection is made to the checked address itself, so a DNS
answer that changes between the check and the connection (rebinding) cannot bypass it. Redirects go through the same
connection path, so they are checked too.

Server code that connects out for a request runs inside :func:`policy_scope`; a plugin that connects (such as a data
backend) reads :func:`active_policy` when it is built and makes its connections with :func:`connect`. Outside any
scope (the CLI, the training process, whose privileged values an admin approved) nothing is restricted.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import attrs

from simpletuner.core.errors import SimpleTunerError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Where an admin changes the policy, for error messages.
POLICY_HINT = ("an admin can allow it under Admin → Outbound connections (the allowed_hosts or allow_private setting "
               "of PATCH /api/settings/outbound)")


class OutboundRefused(SimpleTunerError):
    """A connection the outbound policy does not allow; the message names the endpoint and the setting to change."""


@attrs.frozen
class AllowedHost:
    """One entry of ``allowed_hosts``: a host name or address with an optional port, or a network."""

    host: str | None = None
    port: int | None = None
    network: Network | None = None

    @classmethod
    def parse(cls, text: str) -> AllowedHost:
        """``minio.internal``, ``minio.internal:9000``, ``10.0.0.5``, ``[fd00::5]:9000`` or ``10.0.0.0/8``;
        :class:`ValueError` saying what is wrong."""
        value = text.strip()
        if "://" in value:
            raise ValueError(f"{text!r} is a URL; give its host or host:port (e.g. minio.internal:9000)")
        if not value or len(value) > 300 or any(c.isspace() or c in "\\@?#" for c in value):
            raise ValueError(f"{text!r} is not a host, host:port or network")
        if "/" in value:
            try:
                return cls(network=ipaddress.ip_network(value, strict=False))
            except ValueError:
                raise ValueError(f"{text!r} is not a network such as 10.0.0.0/8") from None
        host, port = _split_host_port(value)
        return cls(host=host.lower().rstrip("."), port=port)

    def matches(self, host: str, port: int, address: Address) -> bool:
        """Whether this entry allows connecting to ``address`` (resolved from ``host``) on ``port``."""
        if self.network is not None:
            return address in self.network
        if self.port is not None and self.port != port:
            return False
        if self.host == host.lower().rstrip("."):
            return True
        try:
            return ipaddress.ip_address(self.host or "") == address
        except ValueError:
            return False

    def __str__(self) -> str:
        if self.network is not None:
            return str(self.network)
        host = f"[{self.host}]" if self.host and ":" in self.host else str(self.host)
        return f"{host}:{self.port}" if self.port is not None else host


def _split_host_port(value: str) -> tuple[str, int | None]:
    port_text: str | None = None
    if value.startswith("["):  # [IPv6] or [IPv6]:port
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r} is not [address] or [address]:port")
        port_text = rest[1:] if rest else None
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        host = value  # a bare name, IPv4 or IPv6 address
    if not host:
        raise ValueError(f"{value!r} names no host")
    if port_text is None:
        return host, None
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{value!r} has no valid port (1-65535)")
    return host, int(port_text)


@attrs.frozen
class OutboundPolicy:
    """The admin's policy: public addresses always; private ones when ``allow_private``; and ``allowed_hosts``."""

    allow_private: bool = False
    allowed_hosts: tuple[AllowedHost, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> OutboundPolicy:
        """The policy as stored (``{"allow_private": bool, "allowed_hosts": [str]}``); :class:`ValueError` naming
        the bad part."""
        if not isinstance(data, dict) or set(data) - {"allow_private", "allowed_hosts"}:
            raise ValueError("the outbound policy is an object with allow_private and allowed_hosts")
        allow_private = data.get("allow_private", False)
        hosts = data.get("allowed_hosts", [])
        if not isinstance(allow_private, bool):
            raise ValueError("allow_private must be true or false")
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts) or len(hosts) > 100:
            raise ValueError("allowed_hosts must be a list of at most 100 strings such as \"minio.internal:9000\"")
        return cls(allow_private=allow_private, allowed_hosts=tuple(AllowedHost.parse(h) for h in hosts))

    def to_json(self) -> dict[str, Any]:
        """As stored and shown."""
        return {"allow_private": self.allow_private, "allowed_hosts": [str(h) for h in self.allowed_hosts]}

    def permits(self, host: str, port: int, address: Address) -> bool:
        """Whether connecting to ``address``, which ``host`` resolved to, on ``port`` is allowed."""
        if is_public(address) or (self.allow_private and _kind(address) == "private"):
            return True
        return any(entry.matches(host, port, address) for entry in self.allowed_hosts)


def is_public(address: Address) -> bool:
    """Whether an address is globally routable unicast: not loopback, link-local (cloud metadata included),
    private, unique-local, shared (CGNAT), documentation, reserved, unspecified or multicast."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


_ACTIVE: ContextVar[OutboundPolicy | None] = ContextVar("simpletuner_outbound_policy", default=None)


@contextmanager
def policy_scope(policy: OutboundPolicy) -> Iterator[None]:
    """Run a block (a request's work) under ``policy``: what connects out inside it is checked against it."""
    token = _ACTIVE.set(policy)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_policy() -> OutboundPolicy | None:
    """The policy of the enclosing :func:`policy_scope`, or None outside any (nothing restricted)."""
    return _ACTIVE.get()


def resolve(host: str, port: int, policy: OutboundPolicy) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` results for a TCP connection to ``host:port``, after checking every address;
    :class:`OutboundRefused` when any is not allowed (one name must not mix allowed and refused addresses)."""
    name = host.strip("[]")
    try:
        results = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OSError(f"cannot resolve {name!r}: {exc}") from None
    for *_, sockaddr in results:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if not policy.permits(name, port, address):
            where = name if str(address) == name else f"{name} ({address})"
            raise OutboundRefused(f"connecting to {where} port {port} is not allowed: it is a {_kind(address)} "
                                  f"address; {POLICY_HINT}")
    return results


def connect(host: str, port: int, policy: OutboundPolicy, timeout: float | None = None,
            source_address: tuple[str, int] | None = None,
            socket_options: Sequence[tuple[int, int, int | bytes]] = ()) -> socket.socket:
    """A TCP connection to ``host:port`` made to an address :func:`resolve` checked (never resolved again);
    :class:`OutboundRefused` before any packet is sent when the policy does not allow it."""
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in resolve(host, port, policy):
        sock = socket.socket(family, kind, proto)
        try:
            for level, option, value in socket_options:
                sock.setsockopt(level, option, value)
            if timeout is not None:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error or OSError(f"{host} has no address")


def refusal_in(exc: BaseException | None) -> OutboundRefused | None:
    """The :class:`OutboundRefused` an error was raised from (libraries wrap connection errors in their own)."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, OutboundRefused):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                   "100.64.0.0/10", "fc00::/7"))


def _kind(address: Address) -> str:
    """What kind of non-public address this is, for messages; only "private" ones ``allow_private`` allows."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for test, kind in (("is_loopback", "loopback"), ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                       ("is_unspecified", "unspecified")):
        if getattr(address, test):
            return kind
    if any(address in network for network in _PRIVATE):
        return "private"
    return "reserved"
