"""DNS rebinding: each attempt resolves the webhook's host once, checks every
address, and connects to a checked one (with the host's name in the Host
header and, in TLS, in SNI and the certificate check), never resolving again.

The resolver is the test's: a rebinding DNS answers one loopback address when
asked first and another one afterwards; a receiver listens on each."""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apps.exports.models import WebhookDelivery
from apps.exports.services import webhooks_push_all
from apps.exports.webhooks import webhooks_deliver_due

from .conftest import members_set
from .receiver import Receiver, receiver_running

pytestmark = pytest.mark.django_db

HOST = "hooks.example"
CHECKED, REBOUND = "127.0.0.1", "127.0.0.2"


class RebindingResolver:
    """Answers ``answers[0]`` for HOST when first asked, then ``answers[1]``
    (the attacker's rebinding); every other name as the system does."""

    def __init__(self, real: Any, *answers: list[str]) -> None:
        self.real = real
        self.answers = answers
        self.asked = 0

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host != HOST:
            return self.real(host, port, *args, **kwargs)
        addresses = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, int(port or 0)))
            for a in addresses
        ]


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(*answers: list[str]) -> RebindingResolver:
        resolver = RebindingResolver(socket.getaddrinfo, *answers)
        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        return resolver

    return install


@pytest.fixture
def two_receivers() -> Iterator[tuple[Receiver, Receiver]]:
    """One receiver on 127.0.0.1 and one on 127.0.0.2, on the same port."""
    with (
        receiver_running(bind=CHECKED) as checked,
        receiver_running(bind=REBOUND, port=checked.port) as rebound,
    ):
        yield checked, rebound


def _certificate(tmp_path: Path, name: str) -> tuple[Path, ssl.SSLContext]:
    """A CA (its PEM file, to trust) and a server context whose certificate,
    signed by it, names ``name``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cdp test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = tmp_path / f"{name}.pem"
    chain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + leaf.public_bytes(serialization.Encoding.PEM)
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(chain)
    return ca_file, server


def _hook(destination: Any, receiver: Receiver, url: str, segments: list[Any]) -> Any:
    target, secret = destination("webhook", segments, settings={"url": url, "timeout_seconds": 5})
    receiver.secret = secret
    return target


def test_the_attempt_connects_to_the_address_it_checked_not_a_rebound_one(
    person: Any, audience: Any, destination: Any, rebinding: Any, two_receivers: Any
) -> None:
    # given a webhook to a name that a rebinding DNS points at 127.0.0.1 when
    # asked first and at 127.0.0.2 when asked again (private networks allowed,
    # as the test settings do, so that both are loopback receivers)
    checked, rebound = two_receivers
    rebound.secret = "whsec_"
    shoes = audience("shoes", [])
    target = _hook(destination, checked, f"http://{HOST}:{checked.port}/hooks/cdp", [shoes])
    members_set(shoes, [person("ada")])
    webhooks_push_all()
    resolver = rebinding([CHECKED], [REBOUND])

    # when the delivery is attempted
    webhooks_deliver_due()

    # then the host was resolved once, and the message went to the address
    # checked, with the host's name in its Host header; nothing to the other
    assert resolver.asked == 1
    assert rebound.received == []
    assert [r.verified for r in checked.received] == [True]
    assert checked.received[0].headers["host"] == f"{HOST}:{checked.port}"
    assert WebhookDelivery.objects.get(destination=target).status == "delivered"


def test_a_name_with_any_address_in_the_private_network_is_refused_before_connecting(
    person: Any,
    audience: Any,
    destination: Any,
    rebinding: Any,
    two_receivers: Any,
    settings: Any,
) -> None:
    # given production's default (no private networks) and a name resolving to
    # a public address and a loopback one
    checked, rebound = two_receivers
    shoes = audience("shoes", [])
    target = _hook(destination, checked, f"http://{HOST}:{checked.port}/hooks/cdp", [shoes])
    members_set(shoes, [person("ada")])
    webhooks_push_all()
    settings.CDP = {**settings.CDP, "EXPORT_WEBHOOK_PRIVATE_NETWORKS": False}
    resolver = rebinding(["8.8.8.8", CHECKED])

    # when the delivery is attempted
    webhooks_deliver_due()

    # then it was refused on the one resolution, and nothing was connected to
    assert resolver.asked == 1
    assert checked.received == [] and rebound.received == []
    delivery = WebhookDelivery.objects.get(destination=target)
    assert delivery.attempts == 1 and delivery.status == "pending"
    assert delivery.last_error.startswith("AddressRefused")


def test_https_checks_the_certificate_and_sni_against_the_name_at_the_pinned_address(
    person: Any,
    audience: Any,
    destination: Any,
    rebinding: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given an https receiver on 127.0.0.1 whose certificate names HOST (its CA
    # trusted as the system's roots), and the rebinding DNS
    ca_file, server_tls = _certificate(tmp_path, HOST)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)
    with (
        receiver_running(bind=CHECKED, tls=server_tls) as checked,
        receiver_running(bind=REBOUND, port=checked.port) as rebound,
    ):
        shoes = audience("shoes", [])
        target = _hook(destination, checked, f"https://{HOST}:{checked.port}/hooks/cdp", [shoes])
        members_set(shoes, [person("ada")])
        webhooks_push_all()
        resolver = rebinding([CHECKED], [REBOUND])

        # when the delivery is attempted
        webhooks_deliver_due()

    # then it was delivered over TLS to the checked address, the client naming
    # HOST in SNI and accepting the certificate for that name
    assert resolver.asked == 1
    assert rebound.received == []
    assert names == [HOST]
    assert [r.verified for r in checked.received] == [True]
    assert WebhookDelivery.objects.get(destination=target).status == "delivered"


def test_https_refuses_a_certificate_for_another_name(
    person: Any,
    audience: Any,
    destination: Any,
    rebinding: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given an https receiver whose certificate names another host
    ca_file, server_tls = _certificate(tmp_path, "other.example")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    with receiver_running(bind=CHECKED, tls=server_tls) as checked:
        shoes = audience("shoes", [])
        target = _hook(destination, checked, f"https://{HOST}:{checked.port}/hooks/cdp", [shoes])
        members_set(shoes, [person("ada")])
        webhooks_push_all()
        rebinding([CHECKED])

        # when the delivery is attempted
        webhooks_deliver_due()

    # then the attempt failed on the certificate, and nothing was received
    assert checked.received == []
    delivery = WebhookDelivery.objects.get(destination=target)
    assert delivery.attempts == 1 and delivery.status == "pending"
    assert "certificate" in delivery.last_error.lower()
