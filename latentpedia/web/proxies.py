"""Who the client is behind a reverse proxy: `X-Forwarded-For` is believed only from trusted proxies.

Rate limits (live routes, logins, password changes) count per client address, the socket's
peer (`request.client.host`). Anyone can send an `X-Forwarded-For` header, so by default no
proxy is trusted and the header is ignored (`latentpedia serve` also turns uvicorn's own
proxy-header handling off). Behind a reverse proxy, name it:

    latentpedia serve --trusted-proxy 127.0.0.1 --trusted-proxy 10.0.0.0/8
    LATENTPEDIA_TRUSTED_PROXIES="127.0.0.1, 10.0.0.0/8" latentpedia serve

When the peer is a trusted proxy, `TrustedProxies` (ASGI middleware) rewrites the request's
client to the right-most `X-Forwarded-For` address that is not itself a trusted proxy (the
entries to its left were written by the client and may be forged), and its scheme to the last
`X-Forwarded-Proto` (so session cookies get `Secure` behind an HTTPS proxy).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from starlette.types import ASGIApp, Receive, Scope, Send

from latentpedia.errors import InvalidInputError

TRUSTED_PROXIES_ENV = "LATENTPEDIA_TRUSTED_PROXIES"
SCHEMES = {"http": ("http", "ws"), "https": ("https", "wss")}  # forwarded proto -> (http, websocket) scheme

Network = IPv4Network | IPv6Network


def parse_proxies(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or networks (`10.0.0.5`, `10.0.0.0/8`, `::1`), comma or space separated."""
    networks = []
    for value in values:
        for part in value.replace(",", " ").split():
            try:
                networks.append(ip_network(part, strict=False))
            except ValueError:
                raise InvalidInputError(f"trusted proxy {part!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)") from None
    return tuple(networks)


def proxies_from_env() -> tuple[Network, ...]:
    """The proxies named in $LATENTPEDIA_TRUSTED_PROXIES (none by default)."""
    return parse_proxies([os.environ.get(TRUSTED_PROXIES_ENV, "")])


def is_trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    """Whether `address` (an IP address as text) is one of `proxies`."""
    try:
        ip = ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def forwarded_client(peer: str, forwarded_for: list[str], proxies: tuple[Network, ...]) -> str:
    """The client a chain of trusted proxies speaks for: walk `forwarded_for` from the right,
    skipping trusted proxies; stop at the first other valid address (else keep the last hop)."""
    client = peer
    for entry in reversed(forwarded_for):
        if not is_trusted(client, proxies):
            break
        try:
            client = str(ip_address(entry.strip()))
        except ValueError:
            break  # not an address: believe nothing further left
    return client


def _header_values(scope: Scope, name: bytes) -> list[str]:
    """Every comma-separated value of header `name` (all its lines, in order)."""
    values: list[str] = []
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            values += [v.strip() for v in value.decode("latin-1").split(",") if v.strip()]
    return values


class TrustedProxies:
    """ASGI middleware: the real client and scheme for requests that come through trusted proxies."""

    def __init__(self, app: ASGIApp, proxies: tuple[Network, ...]):
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and is_trusted(client[0], self.proxies):
            scope = self._as_forwarded(scope, client[0])
        await self.app(scope, receive, send)

    def _as_forwarded(self, scope: Scope, peer: str) -> Scope:
        scope = dict(scope)
        forwarded_for = _header_values(scope, b"x-forwarded-for")
        if forwarded_for:
            scope["client"] = (forwarded_client(peer, forwarded_for, self.proxies), 0)
        proto = _header_values(scope, b"x-forwarded-proto")
        if proto and proto[-1].lower() in SCHEMES:
            scope["scheme"] = SCHEMES[proto[-1].lower()][scope["type"] == "websocket"]
        return scope
