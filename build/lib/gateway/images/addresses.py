"""Which network addresses the gateway may fetch from: public ones only.

The ranges are listed here rather than left to `ipaddress.is_global` alone, whose tables differ
between Python versions (3.11 calls `fec0::/10` global). Python's own checks still apply on top.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv6Address, ip_network

_NOT_PUBLIC_V4 = tuple(ip_network(net) for net in (
    "0.0.0.0/8",          # "this network"
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # private
    "100.64.0.0/10",      # shared (carrier-grade NAT)
    "127.0.0.0/8",        # loopback
    "169.254.0.0/16",     # link-local, cloud metadata
    "192.0.0.0/24",       # IETF protocol assignments
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",  # documentation
    "192.88.99.0/24",     # 6to4 relay anycast (deprecated)
    "198.18.0.0/15",      # benchmarking
    "224.0.0.0/4",        # multicast
    "240.0.0.0/4",        # reserved, and the broadcast address
))

# Every global unicast IPv6 address lies in 2000::/3; what falls outside (IPv4-compatible ::/96,
# discard 100::/64, ULA fc00::/7, link-local, deprecated site-local fec0::/10, multicast, SRv6
# 5f00::/16, ...) is refused, except NAT64's well-known prefix, judged by the IPv4 address inside.
_GLOBAL_UNICAST_V6 = ip_network("2000::/3")
_NAT64 = ip_network("64:ff9b::/96")
_NOT_PUBLIC_V6 = tuple(ip_network(net) for net in (
    "2001::/23",          # IETF protocol assignments (Teredo, ORCHID, benchmarking, ...)
    "2001:db8::/32", "3fff::/20",  # documentation
))


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses.

    Refuses loopback, private, link-local (cloud metadata at 169.254.169.254), multicast,
    reserved, unspecified, shared (100.64/10), documentation and benchmarking ranges, and IPv4
    addresses hidden in IPv6 forms unless the IPv4 address inside is public.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(str(ip.ipv4_mapped))
        if ip in _NAT64:
            return is_public_address(str(IPv4Address(int(ip) & 0xFFFFFFFF)))
        if ip not in _GLOBAL_UNICAST_V6 or any(ip in net for net in _NOT_PUBLIC_V6):
            return False
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    elif any(ip in net for net in _NOT_PUBLIC_V4):
        return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_private or ip.is_loopback or ip.is_link_local
        or ip.is_reserved or ip.is_unspecified
    )
