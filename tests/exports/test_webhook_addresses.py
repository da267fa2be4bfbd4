"""Which addresses a webhook may be sent to (kinds.address_is_public, used on
save for a literal URL and at each attempt for every resolved address): an IPv6
address that leads to an IPv4 one (IPv4-mapped, 6to4, Teredo, NAT64,
IPv4-compatible) is judged by that IPv4 address too."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.exports.kinds import address_is_public, embedded_ipv4, webhook_url_problem


@pytest.fixture(autouse=True)
def _production(settings: Any) -> None:
    # production's default: no private networks
    settings.CDP = {**settings.CDP, "EXPORT_WEBHOOK_PRIVATE_NETWORKS": False}


def _url(address: str) -> str:
    return f"https://[{address}]/hooks" if ":" in address else f"https://{address}/hooks"


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b::a00:5",  # NAT64 of 10.0.0.5
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe:1::1",  # 6to4 of 169.254.169.254
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:a9fe:a9fe",  # IPv4-mapped 169.254.169.254
        "2001:0:7f00:1:0:0:f5ff:fffe",  # Teredo, server 127.0.0.1, client 10.0.0.1
        "64:ff9b:1::808:808",  # local-use NAT64: inside the operator's network
        "239.255.255.250",  # IPv4 multicast
        "192.0.0.8",  # IPv4 dummy address (RFC 7600)
        "3fff::1",  # IPv6 documentation (RFC 9637)
        "fec0::1",  # site-local
    ],
)
def test_an_address_leading_into_the_private_network_is_refused(address: str) -> None:
    assert not address_is_public(address)
    assert webhook_url_problem(_url(address)) != ""


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "192.0.0.9",  # PCP anycast: global, unlike the rest of 192.0.0.0/24
        "2606:4700:4700::1111",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_a_public_address_and_one_leading_to_a_public_ipv4_pass(address: str) -> None:
    assert address_is_public(address)
    assert webhook_url_problem(_url(address)) == ""


def test_with_private_networks_allowed_an_embedded_unspecified_address_is_still_refused(
    settings: Any,
) -> None:
    settings.CDP = {**settings.CDP, "EXPORT_WEBHOOK_PRIVATE_NETWORKS": True}
    assert address_is_public("::ffff:10.0.0.5") and address_is_public("64:ff9b::7f00:1")
    assert not address_is_public("::ffff:0.0.0.0")
    assert not address_is_public("64:ff9b::e000:1")  # NAT64 of 224.0.0.1


# Every IPv4 range that is not global unicast (IANA's special-purpose registry,
# and multicast), but for 192.0.0.9 and 192.0.0.10, global anycast addresses.
_NOT_PUBLIC = [
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


@st.composite
def not_public_ipv4(draw: Any) -> ipaddress.IPv4Address:
    network = draw(st.sampled_from(_NOT_PUBLIC))
    anycast = {ipaddress.IPv4Address("192.0.0.9"), ipaddress.IPv4Address("192.0.0.10")}
    offsets = st.integers(0, network.num_addresses - 1)
    return draw(offsets.map(lambda i: network[i]).filter(lambda ip: ip not in anycast))


def public_ipv4() -> Any:
    return st.ip_addresses(v=4).filter(
        lambda ip: ip.is_global and not ip.is_multicast and ip not in _NOT_PUBLIC[6]
    )


def _embed(how: str, v4: ipaddress.IPv4Address, other: ipaddress.IPv4Address, rest: int) -> str:
    """An IPv6 address carrying ``v4`` as ``how`` puts it (``other`` and ``rest``
    fill the remaining fields)."""
    n = int(v4)
    if how == "mapped":
        value = 0xFFFF << 32 | n
    elif how == "6to4":
        value = 0x2002 << 112 | n << 80 | (rest & (1 << 80) - 1)
    elif how == "nat64":
        value = 0x64FF9B << 96 | n
    elif how == "compatible":
        value = n
    elif how == "teredo server":
        value = 0x20010000 << 96 | n << 64 | (rest & 0xFFFFFFFF) << 32 | (int(other) ^ 0xFFFFFFFF)
    else:  # teredo client, stored inverted
        value = 0x20010000 << 96 | int(other) << 64 | (rest & 0xFFFFFFFF) << 32 | (n ^ 0xFFFFFFFF)
    return str(ipaddress.IPv6Address(value))


_HOW = ["mapped", "6to4", "nat64", "compatible", "teredo server", "teredo client"]


@hypothesis_settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    how=st.sampled_from(_HOW),
    v4=not_public_ipv4(),
    other=st.ip_addresses(v=4),
    rest=st.integers(0, (1 << 80) - 1),
)
def test_an_address_with_an_embedded_private_ipv4_is_never_accepted(
    how: str, v4: ipaddress.IPv4Address, other: ipaddress.IPv4Address, rest: int
) -> None:
    address = _embed(how, v4, other, rest)
    assert v4 in embedded_ipv4(ipaddress.IPv6Address(address))
    assert not address_is_public(address)
    assert webhook_url_problem(_url(address)) != ""


@hypothesis_settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    how=st.sampled_from(["6to4", "nat64"]),
    v4=public_ipv4(),
    rest=st.integers(0, (1 << 80) - 1),
)
def test_nat64_and_6to4_of_a_public_ipv4_are_accepted(
    how: str, v4: ipaddress.IPv4Address, rest: int
) -> None:
    # (the other forms are refused by IPv6's own rules: Teredo and IPv4-mapped
    # are not global unicast ranges)
    address = _embed(how, v4, v4, rest)
    assert address_is_public(address)
