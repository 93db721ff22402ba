import pytest

from gateway.images.addresses import is_public_address

# (address, why it is refused): every range that is not globally routable unicast.
NOT_PUBLIC = [
    ("127.0.0.1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local: cloud metadata"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this network 0.0.0.0/8"),
    ("100.64.0.1", "shared 100.64/10"),
    ("100.127.255.254", "shared 100.64/10"),
    ("192.0.0.8", "IETF protocol assignments 192.0.0.0/24"),
    ("192.0.0.170", "IETF protocol assignments 192.0.0.0/24"),
    ("192.0.2.1", "documentation TEST-NET-1"),
    ("198.51.100.1", "documentation TEST-NET-2"),
    ("203.0.113.1", "documentation TEST-NET-3"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("198.18.0.1", "benchmarking 198.18/15"),
    ("198.19.255.254", "benchmarking 198.18/15"),
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved 240/4"),
    ("255.255.255.255", "broadcast"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local with a zone"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fec0::1", "deprecated site-local fec0::/10"),
    ("feff::1", "deprecated site-local fec0::/10"),
    ("ff02::1", "multicast"),
    ("100::1", "discard-only 100::/64"),
    ("5f00::1", "SRv6 SIDs"),
    ("::7f00:1", "IPv4-compatible ::127.0.0.1"),
    ("::a00:1", "IPv4-compatible ::10.0.0.1"),
    ("::808:808", "IPv4-compatible, deprecated even with a public IPv4"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
    ("::ffff:0:7f00:1", "IPv4-translated (SIIT)"),
    ("64:ff9b::7f00:1", "NAT64 of 127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "NAT64 of 169.254.169.254"),
    ("64:ff9b::c0a8:101", "NAT64 of 192.168.1.1"),
    ("64:ff9b:1::808:808", "local-use NAT64 64:ff9b:1::/48"),
    ("2002:7f00:1::", "6to4 of 127.0.0.1"),
    ("2002:a00:1::1", "6to4 of 10.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),
    ("2001:2::1", "benchmarking 2001:2::/48"),
    ("2001:10::1", "ORCHID"),
    ("2001:db8::1", "documentation 2001:db8::/32"),
    ("3fff::1", "documentation 3fff::/20"),
    ("not-an-ip", "not an address"),
    ("", "not an address"),
]

PUBLIC = [
    "8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "192.0.1.1", "198.17.255.255", "198.20.0.1",
    "223.255.255.254", "2606:4700:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 (DNS64) of a public address: how IPv6-only networks reach IPv4
    "2002:808:808::1",  # 6to4 of a public address
]


@pytest.mark.parametrize(("address", "why"), NOT_PUBLIC, ids=[a or "empty" for a, _ in NOT_PUBLIC])
def test_non_public_addresses_are_refused(address, why):
    assert not is_public_address(address), why


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert is_public_address(address)
