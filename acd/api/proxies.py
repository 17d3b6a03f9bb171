"""Adapter: who the client is, behind a reverse proxy too, and what their limits count against.

In production a proxy (nginx, Caddy...) terminates TLS in front of the server (the panel's
session cookie is Secure), so every request comes from the proxy's address, and the limits
counted per client address (forms and callback requests per minute, sign-in attempts)
would be shared by every visitor and every manager. A request that comes from a proxy
listed in `server.trusted_proxies` is taken as coming from the address that proxy names:
the nearest X-Forwarded-For entry, from the right, that is not itself a trusted proxy,
with the scheme of its X-Forwarded-Proto. From anybody else the headers are ignored, so a
client cannot choose the address its limits are counted against.

Written here rather than taken from aiohttp-remotes: its filtered variant believes the
header from any peer, its strict one refuses requests that do not come through every
listed hop, and both refuse a whole request for one entry that is not an address, such as
the "unknown" that Squid writes in front of the real one. Here the walk stops at such an
entry: what lies left of the last address our own proxy wrote is the client's to say.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware


def behind_proxies(trusted: Sequence[str]) -> Middleware:
    """A middleware, to be the outermost: the client's address (and scheme) as the trusted
    proxies (addresses or networks) tell them."""
    networks = [ip_network(t) for t in trusted]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _trusted(networks, request.remote):
            return await handler(request)
        client = client_address(networks, request.remote or "", request.headers.getall("X-Forwarded-For", []))
        proto = ",".join(request.headers.getall("X-Forwarded-Proto", [])).split(",")[-1].strip().lower()
        if proto in ("http", "https"):
            return await handler(request.clone(remote=client, scheme=proto))
        return await handler(request.clone(remote=client))

    return middleware


def limit_key(request: web.Request) -> str:
    """What the limits per client count against: the client's address, or for IPv6 its /64
    (one subscriber's network, in which a host may take any of 2^64 addresses)."""
    remote = request.remote or "unknown"
    if ":" not in remote:  # IPv4 as the socket gives it (or no address): nothing to parse on each form
        return remote
    try:
        ip = IPv6Address(remote)
    except ValueError:
        return remote
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip_network(f"{ip}/64", strict=False))


def client_address(networks: Sequence[IPv4Network | IPv6Network], peer: str, forwarded_for: Sequence[str]) -> str:
    """The nearest address, from the peer leftwards along X-Forwarded-For, that is not a
    trusted proxy; the last trusted one when the chain ends before it (no header, or an
    entry that is not an address)."""
    client = peer
    for entry in reversed(",".join(forwarded_for).split(",")):
        if not _trusted(networks, client):
            break
        try:
            client = str(ip_address(entry.strip()))
        except ValueError:
            break
    return client


def _trusted(networks: Sequence[IPv4Network | IPv6Network], address: str | None) -> bool:
    try:
        ip = ip_address(address or "")
    except ValueError:  # no peer address (a UNIX socket)
        return False
    return any(ip in n for n in networks)
