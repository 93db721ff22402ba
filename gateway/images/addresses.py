"""Which network addresses the gateway may fetch from: public ones only."""

from __future__ import annotations

import ipaddress


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses.

    Refuses loopback, private, link-local (cloud metadata at 169.254.169.254), multicast,
    reserved, unspecified, shared (100.64/10), and IPv4 addresses hidden in IPv6 forms.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(str(ip.ipv4_mapped))
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_private or ip.is_loopback or ip.is_link_local
        or ip.is_reserved or ip.is_unspecified
    )
