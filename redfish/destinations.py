"""Where EventService may POST events: a policy checked at subscription and at every push.

A subscription makes the BMC send HTTP requests wherever a client says, so a careless default
turns it into a proxy into networks only the BMC reaches. By default any address is allowed
except link-local ones (169.254.0.0/16 holds cloud metadata services; fe80::/10), unspecified,
multicast and broadcast addresses, and the BMC's own Redfish listener (its address and
port, and that port on loopback): a BMC pushing events to itself would feed on its own
events. Loopback stays allowed so that a receiver on the same host works (the tests use
one). `create_app(event_destinations=[...])` replaces the default with an allow list of
networks: then only those are allowed (the BMC's own listener still is not).

A destination named by a host name is resolved when an event is pushed (in a delivery thread,
never a request thread) and every address it resolves to is checked; redirects are not
followed, so a receiver cannot send the push on elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: refused unless an allow list names them
REFUSED: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10",          # link-local (cloud metadata at 169.254.169.254)
    "0.0.0.0/8", "::/128",                  # "this host" / unspecified
    "224.0.0.0/4", "ff00::/8", "255.255.255.255/32"))  # multicast, broadcast


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    return address


@dataclass(frozen=True)
class DestinationPolicy:
    #: None: everything but REFUSED; otherwise only these networks
    allow: tuple[Network, ...] | None = None
    #: the BMC's own Redfish listener (address, port): never a destination
    own: tuple[str, int] | None = None

    @classmethod
    def from_networks(cls, networks: Iterable[str] | None) -> DestinationPolicy:
        if networks is None:
            return cls()
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def with_own(self, address: str, port: int) -> DestinationPolicy:
        return DestinationPolicy(self.allow, (address, port))

    def refuses(self, address: Address, port: int) -> str | None:
        """Why a push to `address`:`port` is refused, or None."""
        if self.own is not None and port == self.own[1]:
            own = _address(self.own[0])
            if address == own or address.is_loopback or address.is_unspecified:
                return "the BMC's own Redfish service"
        if self.allow is not None:
            if not any(address in network for network in self.allow):
                return "not in the networks events may be sent to"
            return None
        if any(address in network for network in REFUSED):
            return "a link-local, unspecified, multicast or broadcast address"
        return None

    def check_url(self, url: str, *, resolve: bool) -> str | None:
        """Why `url` may not be a destination, or None. Without `resolve`, a host name is
        accepted unchecked (it is checked, resolved, at every push)."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return "malformed URL"
        host = parts.hostname or ""
        address = _address(host)
        if address is not None:
            return self.refuses(address, port)
        if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
            return self.refuses(ipaddress.ip_address("127.0.0.1"), port)
        if not resolve:
            return None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            return f"its host does not resolve ({exc})"
        for info in infos:
            resolved = _address(str(info[4][0]))
            reason = resolved is not None and self.refuses(resolved, port)
            if reason:
                return reason
        return None
