"""Where a webhook may be sent (SSRF protection), checked at registration and again at
every delivery, and the address the connection then goes to.

A URL's host is resolved and **every** address it resolves to must be public: not
loopback, private (RFC 1918, unique-local), link-local (cloud metadata lives there),
carrier-grade NAT (100.64.0.0/10), multicast, unspecified or otherwise reserved; IPv4
mapped into IPv6 is unwrapped first. The delivery connects to the address that was checked
(the host name only travels as Host and TLS SNI), so DNS cannot answer differently between
the check and the connection (rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# Named for clarity; the generic checks below also refuse them.
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class TargetRefused(ValueError):
    """The URL may not receive webhooks; the message says why (safe to show an admin)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    #: The checked address the connection goes to.
    address: IPAddress
    path: str


def address_problem(address: IPAddress) -> str | None:
    """Why ``address`` may not be a webhook target, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT address"
    if address.is_private or address.is_reserved or not address.is_global:
        return "a private or reserved address"
    return None


def parse(url: str, *, allow_http: bool, allowed_ports: list[int]) -> tuple[str, str, int, str]:
    """(scheme, host, port, path+query) of an acceptable URL; raises :class:`TargetRefused`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("The URL is not valid.") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise TargetRefused("Webhook URLs must use https.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("Webhook URLs may not carry credentials.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TargetRefused("The URL has no host.")
    if parts.fragment:
        raise TargetRefused("Webhook URLs may not carry a fragment.")
    port = port or (443 if scheme == "https" else 80)
    if port not in allowed_ports:
        raise TargetRefused(f"Port {port} is not allowed for webhooks.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, host, port, path


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal address: itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise TargetRefused(f"The host {host!r} does not resolve.") from None
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise TargetRefused(f"The host {host!r} does not resolve.")
    return found


async def check(
    url: str, *, allow_http: bool, allow_private: bool, allowed_ports: list[int]
) -> Target:
    """The target of ``url`` after every check; raises :class:`TargetRefused`."""
    scheme, host, port, path = parse(url, allow_http=allow_http, allowed_ports=allowed_ports)
    addresses = await resolve(host, port)
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem is not None:
                raise TargetRefused(f"The host {host!r} resolves to {problem}.")
    return Target(scheme=scheme, host=host, port=port, address=addresses[0], path=path)
