"""Outbound HTTP to addresses a tenant names: the destination guard and ``Retry-After``.

The HTTP connector (pulling a tenant's endpoint) and webhook deliveries (pushing to a
tenant's receiver) both reach URLs a tenant typed, from inside the platform's network.
One guard keeps both off loopback, private, link-local, multicast and reserved addresses
unless the operator allows them (``RECOVA_HTTP_SOURCES_ALLOW_PRIVATE``): the host is
resolved once, every address it resolves to must be public, and the request then connects
to the checked address (``pin_destination``) with the original name in the ``Host``
header and as the TLS server name. A DNS answer that changes between check and use (DNS
rebinding) therefore never reaches an internal address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

Resolver = Callable[[str, int], list[str]]


class DestinationRefused(ValueError):
    """The destination may not be reached; ``reason`` says why (``unresolved`` or
    ``private``), the message says it in words."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def resolve_host(host: str, port: int) -> list[str]:
    """Every address the host name resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is on the public internet (not loopback, private, reserved...)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        # Also shared address space (100.64.0.0/10) and the like, which none of the
        # flags above cover.
        or not address.is_global
    )


@dataclass(frozen=True)
class PinnedDestination:
    """Where to connect: the URL with the checked address, and what keeps the name."""

    url: httpx.URL
    host_header: str | None = None
    extensions: dict[str, Any] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        """The ``Host`` header to send (none when the URL was left as it was)."""
        return {"Host": self.host_header} if self.host_header else {}


def check_destination(
    url: httpx.URL, *, allow_private: bool, resolve: Resolver = resolve_host
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``url``'s host resolves to, all public; else ``DestinationRefused``.

    With ``allow_private`` nothing is resolved and the list is empty.
    """
    if allow_private:
        return []
    # The ASCII (IDNA) form: what DNS, the Host header and TLS all expect.
    host = url.raw_host.decode("ascii")
    try:
        addresses = [ipaddress.ip_address(a) for a in resolve(host, url.port or 0)]
    except (OSError, UnicodeError, ValueError):
        raise DestinationRefused(
            "the host name could not be resolved", reason="unresolved"
        ) from None
    if not addresses or not all(is_public(address) for address in addresses):
        raise DestinationRefused(
            "the host is on a private or reserved network, which the platform may not reach",
            reason="private",
        )
    return addresses


def pin_destination(
    url: httpx.URL, *, allow_private: bool, resolve: Resolver = resolve_host
) -> PinnedDestination:
    """Check ``url``'s host (``check_destination``) and pin the request to its address."""
    if allow_private:
        return PinnedDestination(url)
    addresses = check_destination(url, allow_private=False, resolve=resolve)
    host = url.raw_host.decode("ascii")
    # netloc keeps the port and an IPv6 literal's brackets, and drops any userinfo.
    host_header = url.netloc.decode("ascii")
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return PinnedDestination(url.copy_with(host=str(addresses[0])), host_header, extensions)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date), if any."""
    header = response.headers.get("Retry-After")
    if header is None:
        return None
    header = header.strip()
    if header.isascii() and header.isdigit():
        return float(header)
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
