"""Each destination kind's settings: what may be set, the defaults, and how a
value is checked (the admin form and the service call ``settings_validate``)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings

from .models import DestinationKind

MB = 1024 * 1024


@dataclass(frozen=True)
class Setting:
    kind: type
    default: Any
    minimum: int | None = None
    help: str = ""


# The vendors' documented limits are the defaults; a destination may set lower
# ones (the tests split files at a few rows).
_SPLIT = {
    "max_rows": Setting(int, 500_000, 1, "Rows per file (Adobe: at most 500,000)."),
    "max_bytes": Setting(int, 50 * MB, 16, "Bytes per file (Adobe: at most 50 MB)."),
}
SETTINGS: dict[str, dict[str, Setting]] = {
    DestinationKind.WEBHOOK: {
        "url": Setting(str, "", help="The endpoint (http or https)."),
        "timeout_seconds": Setting(int, 10, 1, "Per attempt."),
    },
    DestinationKind.JSON_FEED: {},
    DestinationKind.ADOBE_TARGET: {
        **_SPLIT,
        "id_column": Setting(str, "thirdPartyId", help="thirdPartyId or pcId."),
        "attribute_prefix": Setting(str, "cdp_", help="Profile attribute per segment."),
    },
    DestinationKind.OPTIMIZELY: {
        # "Under 5 MB": the default leaves room below the limit.
        "max_bytes": Setting(int, 5 * MB - 1024, 16, "Bytes per list file (under 5 MB)."),
    },
    DestinationKind.DYNAMIC_YIELD: {
        **_SPLIT,
        "max_bytes": Setting(int, 100 * MB, 16, "Bytes per file (Dynamic Yield: 100 MB)."),
        "max_rows": Setting(int, 10_000_000, 1, "Rows per file."),
        "id_column": Setting(str, "CUID", help="The first column's name."),
    },
    DestinationKind.GOOGLE_CUSTOMER_MATCH: {
        **_SPLIT,
        "max_rows": Setting(int, 1_000_000, 1, "Rows per file."),
        "max_bytes": Setting(int, 50 * MB, 16, "Bytes per file."),
    },
    DestinationKind.META_CUSTOM_AUDIENCE: {
        **_SPLIT,
        "max_rows": Setting(int, 1_000_000, 1, "Rows per file."),
        "max_bytes": Setting(int, 50 * MB, 16, "Bytes per file."),
    },
}
ADOBE_MAX_ROWS = 500_000
ADOBE_MAX_BYTES = 50 * MB


class SettingsError(ValueError):
    """``errors``: setting name -> what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def settings_validate(kind: str, value: Any) -> dict[str, Any]:
    """The settings with defaults filled in; ``SettingsError`` naming each bad one."""
    if kind not in SETTINGS:
        raise SettingsError({"kind": f"unknown kind {kind!r}"})
    if not isinstance(value, dict):
        raise SettingsError({"settings": "must be a JSON object"})
    known = SETTINGS[kind]
    errors: dict[str, str] = {}
    for name in sorted(set(value) - set(known)):
        errors[name] = f"not a setting of {kind} (known: {', '.join(sorted(known)) or 'none'})"
    out: dict[str, Any] = {}
    for name, spec in known.items():
        given = value.get(name, spec.default)
        if spec.kind is int:
            if isinstance(given, bool) or not isinstance(given, int):
                errors[name] = "must be a whole number"
                continue
            if spec.minimum is not None and given < spec.minimum:
                errors[name] = f"must be at least {spec.minimum}"
                continue
        elif not isinstance(given, str):
            errors[name] = "must be a string"
            continue
        out[name] = given
    if kind == DestinationKind.WEBHOOK and "url" not in errors:
        problem = webhook_url_problem(out["url"])
        if problem:
            errors["url"] = problem
    if (
        kind == DestinationKind.WEBHOOK
        and isinstance(out.get("timeout_seconds"), int)
        and out["timeout_seconds"] > WEBHOOK_MAX_TIMEOUT
    ):
        errors["timeout_seconds"] = f"must be at most {WEBHOOK_MAX_TIMEOUT}"
    if kind == DestinationKind.ADOBE_TARGET:
        if out.get("id_column") not in ("thirdPartyId", "pcId"):
            errors["id_column"] = "must be thirdPartyId or pcId"
        if isinstance(out.get("max_rows"), int) and out["max_rows"] > ADOBE_MAX_ROWS:
            errors["max_rows"] = f"Adobe takes at most {ADOBE_MAX_ROWS} rows per file"
        if isinstance(out.get("max_bytes"), int) and out["max_bytes"] > ADOBE_MAX_BYTES:
            errors["max_bytes"] = f"Adobe takes at most {ADOBE_MAX_BYTES} bytes per file"
    optimizely_bytes = out.get("max_bytes") if kind == DestinationKind.OPTIMIZELY else None
    if isinstance(optimizely_bytes, int) and optimizely_bytes >= 5 * MB:
        errors["max_bytes"] = "Optimizely list files must stay under 5 MB"
    if errors:
        raise SettingsError(errors)
    return out


# Below the delivery task's time limit, so that an attempt ends as a failure.
WEBHOOK_MAX_TIMEOUT = 30


# IPv6 ranges whose addresses carry an IPv4 address in their last 32 bits
# (RFC 6052's well-known NAT64 prefix; the deprecated IPv4-compatible ::/96).
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# Ranges IANA's special-purpose registries list as not globally reachable that
# Python 3.11's ``is_global`` still takes as global (3.12.4 corrected its
# table): 192.0.0.0/24 but for two anycast addresses, RFC 8215's local-use NAT64
# prefix (translators inside the operator's network, the IPv4 address placed as
# that network chose, so not read back: the whole range is private), the IPv6
# documentation range 3fff::/20, SRv6 SIDs 5f00::/16 and deprecated site-local.
_NOT_GLOBAL = [
    ipaddress.ip_network(n)
    for n in ("192.0.0.0/24", "64:ff9b:1::/48", "3fff::/20", "5f00::/16", "fec0::/10")
]
_GLOBAL_ANYWAY = {ipaddress.ip_address("192.0.0.9"), ipaddress.ip_address("192.0.0.10")}


def _is_global_unicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if ip in _GLOBAL_ANYWAY:
        return True
    if ip.is_multicast or any(ip in n for n in _NOT_GLOBAL if n.version == ip.version):
        return False
    return ip.is_global


def embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: IPv4-mapped, 6to4, Teredo
    (server and client), NAT64 (64:ff9b::/96) and IPv4-compatible (::/96)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64_WELL_KNOWN or ip in _IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def address_is_public(address: str) -> bool:
    """Whether a webhook may be sent to this address: a global unicast one, unless
    CDP_EXPORT_WEBHOOK_PRIVATE_NETWORKS allows the private networks too (a receiver
    inside one's own network, and the tests' loopback receiver). An IPv6 address
    that leads to an IPv4 one (``embedded_ipv4``) is judged by that one too:
    ``64:ff9b::a9fe:a9fe`` reaches 169.254.169.254 through NAT64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    candidates = [ip, *embedded_ipv4(ip)]
    if django_settings.CDP.get("EXPORT_WEBHOOK_PRIVATE_NETWORKS"):
        return not any(c.is_multicast or c.is_unspecified for c in candidates)
    return all(_is_global_unicast(c) for c in candidates)


def url_redacted(text: str, url: str) -> str:
    """``text`` without ``url``'s query string and user info, which may hold a
    token: for error messages that are stored, shown in admin or logged. Split by
    hand, so that a URL the parser refuses is redacted too."""
    query = url.partition("?")[2].partition("#")[0]
    authority = url.partition("://")[2].partition("/")[0].partition("?")[0]
    for secret in (query, authority.rpartition("@")[0]):
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def webhook_url_problem(url: str) -> str:
    """What is wrong with a webhook URL, or "" (the address it names is checked
    again, resolved, at each delivery)."""
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        return "must be an http or https URL with a host (and a port from 1 to 65535)"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an http or https URL with a host"
    if port == 0:
        return "must be an http or https URL with a host (and a port from 1 to 65535)"
    if "@" in parts.netloc:
        # It would sit in plain JSON, in admin and in error messages; the receiver
        # authenticates the CDP by the signature (the destination's secret).
        return (
            "must not carry a user name or password (user:pass@): the receiver "
            "verifies the webhook-signature header with the destination's secret"
        )
    literal = True
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        literal = False
    if (literal and not address_is_public(host)) or (
        host.rstrip(".").lower() in ("localhost", "localhost.localdomain")
        and not django_settings.CDP.get("EXPORT_WEBHOOK_PRIVATE_NETWORKS")
    ):
        return "must not name a private, loopback or link-local address"
    return ""
