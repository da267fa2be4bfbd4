"""Webhooks, signed per the Standard Webhooks spec (standardwebhooks.com):

* headers ``webhook-id`` (the message id, the same on every retry),
  ``webhook-timestamp`` (Unix seconds of the attempt) and ``webhook-signature``
  (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``), keyed by the base64
  after the ``whsec_`` prefix of the destination's secret;
* deliveries are rows (``WebhookDelivery``), attempted by the ``webhooks_tick``
  task outside any transaction (a lease on the row keeps two workers off one
  message), retried with exponential backoff and jitter (``retry_delays``: by
  default about 33 hours in all) and dead-lettered after the last attempt
  (admin lists them, with a retry action);
* a 410 Gone disables the destination and cancels what is still queued for it;
* each attempt resolves the host once, refuses it if any address is private
  (unless allowed), and connects to those checked addresses themselves (the
  Host header, SNI and certificate check still name the host): a rebinding DNS
  cannot answer a public address to the check and 127.0.0.1 to the connection;
* redirects are not followed (a 3xx is a failed attempt): a message must never
  reach a host the destination does not name;
* nothing of a body is logged (it names people), only ids and status codes;
* the secret is stored encrypted (``Destination.webhook_secret_encrypted``,
  apps/common/crypto.py) and decrypted at each attempt: one that no key of
  ``CDP_SECRETS_KEY`` decrypts fails the attempt with that reason (nothing is
  sent, the delivery is retried as after any failure), it does not crash the
  tick for the other deliveries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import random
import secrets
import socket
import ssl
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.common.crypto import SecretDecryptError, secret_decrypt
from apps.segments.models import Segment

from .kinds import WEBHOOK_MAX_TIMEOUT, address_is_public, url_redacted, webhook_url_problem
from .models import DeliveryStatus, Destination, DestinationKind, ExportRun, WebhookDelivery
from .selectors import (
    audience_profiles,
    changes_after,
    chunked,
    identifier_expression,
    memberships_of,
    profiles_allowed,
)

logger = logging.getLogger(__name__)

LEASE_SECONDS = 120
PUSH_BATCH = 5000
USER_AGENT = "cdp-webhooks/1"


def _default_delays() -> list[float]:
    # 10 s, 30 s, 90 s, ... tripling up to six hours, twelve retries: 33 h in all,
    # at least 24.8 h with the lowest jitter (0.75).
    return [min(10.0 * 3**n, 6 * 3600.0) for n in range(12)]


def retry_delays() -> list[float]:
    """Seconds before each retry (``CDP["EXPORT_WEBHOOK_RETRY_DELAYS"]``)."""
    configured = settings.CDP.get("EXPORT_WEBHOOK_RETRY_DELAYS")
    return [float(d) for d in configured] if configured is not None else _default_delays()


def jittered(delay: float) -> float:
    return delay * random.uniform(0.75, 1.25)


# -- signing -------------------------------------------------------------------------


def webhook_secret_of(destination: Destination) -> str:
    """The destination's ``whsec_`` secret, decrypted (``SecretDecryptError``
    naming what to do when no configured key decrypts it; ``ValueError`` when it
    has none)."""
    if not destination.webhook_secret_encrypted:
        raise ValueError("the destination has no webhook secret (rotate it to make one)")
    return secret_decrypt(destination.webhook_secret_encrypted)


def secret_key(secret: str) -> bytes:
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str, message_id: str, body: bytes, *, now: float | None = None
) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


# -- messages ------------------------------------------------------------------------


def message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def _body(event_type: str, data: dict[str, Any]) -> str:
    payload = {"type": event_type, "timestamp": timezone.now().isoformat(), "data": data}
    return orjson.dumps(payload).decode()


def delivery_build(
    destination: Destination,
    event_type: str,
    data: dict[str, Any],
    *,
    profile_id: Any = None,
    now: datetime | None = None,
) -> WebhookDelivery:
    return WebhookDelivery(
        destination=destination,
        message_id=message_id(),
        event_type=event_type,
        body=_body(event_type, data),
        profile_id=profile_id,
        next_attempt_at=now or timezone.now(),
    )


def _kick() -> None:
    from .tasks import webhooks_deliver_due

    transaction.on_commit(lambda: webhooks_deliver_due.delay())


def _profile_ref(destination: Destination, ident: str) -> dict[str, str]:
    from .services import hashed

    return {
        "type": destination.identifier_type,
        "hashing": destination.hashing,
        "id": hashed(destination, ident),
    }


def webhook_changes_enqueue(
    run: ExportRun, destination: Destination, segments: list[Segment]
) -> Any:
    """Membership changes from the outbox after the destination's cursor, up to
    the run's ``outbox_to``: one ``membership.changed`` message per person and
    batch, for the people who allow the destination, with their changes and
    their current segments. The cursor moves in the same transaction as the
    messages are written, so a crash neither loses nor repeats a batch."""
    from .services import Counts

    counts = Counts()
    keys = {s.pk: s.key for s in segments}
    run.outbox_from = destination.outbox_cursor
    cursor = destination.outbox_cursor
    while cursor < run.outbox_to:
        rows = [
            r
            for r in changes_after(list(keys), after=cursor, limit=PUSH_BATCH)
            if r[0] <= run.outbox_to
        ]
        if not rows:
            break
        with transaction.atomic():
            people = sorted({r[1] for r in rows})
            idents = dict(
                profiles_allowed(destination)
                .filter(pk__in=people)
                .annotate(ident=identifier_expression(destination.identifier_type))
                .values_list("pk", "ident")
            )
            now_in = memberships_of(list(idents), list(keys))
            by_person: dict[Any, list[dict[str, Any]]] = {}
            for change_id, pid, sid, kind, at in rows:
                by_person.setdefault(pid, []).append(
                    {
                        "segment": keys[sid],
                        "kind": kind,
                        "at": at.isoformat(),
                        "outbox_id": change_id,
                    }
                )
            deliveries = []
            for pid in people:
                if pid not in idents:
                    run.skipped_consent += 1
                    continue
                if not idents[pid]:
                    counts.skipped_no_identifier += 1
                    continue
                data = {
                    "profile": _profile_ref(destination, idents[pid]),
                    "changes": by_person[pid],
                    "segments": sorted(keys[s] for s in now_in.get(pid, set())),
                }
                deliveries.append(
                    delivery_build(destination, "membership.changed", data, profile_id=pid)
                )
                counts.rows += len(by_person[pid])
                counts.profiles += 1
            WebhookDelivery.objects.bulk_create(deliveries)
            cursor = rows[-1][0]
            Destination.objects.filter(pk=destination.pk).update(outbox_cursor=cursor)
            _kick()
    # Changes of segments not sent (below their minimum size) are passed over too.
    if cursor < run.outbox_to:
        Destination.objects.filter(pk=destination.pk).update(outbox_cursor=run.outbox_to)
    destination.outbox_cursor = max(cursor, run.outbox_to)
    counts.parts = []
    return counts


def webhook_snapshot_enqueue(
    run: ExportRun, destination: Destination, segments: list[Segment]
) -> Any:
    """A full run: an ``audience.snapshot`` message per allowed member of the
    activated segments, with her current segments; the cursor moves to the run's
    outbox id (the changes before it are in the snapshot)."""
    from .services import Counts

    counts = Counts()
    ids = [s.pk for s in segments]
    keys = {s.pk: s.key for s in segments}
    if ids:
        for chunk in chunked(audience_profiles(destination, ids), "pk", "ident"):
            member_of = memberships_of([row[0] for row in chunk], ids)
            with transaction.atomic():
                deliveries = []
                for pid, ident in chunk:
                    if not ident:
                        counts.skipped_no_identifier += 1
                        continue
                    data = {
                        "profile": _profile_ref(destination, ident),
                        "segments": sorted(keys[s] for s in member_of.get(pid, set())),
                    }
                    deliveries.append(
                        delivery_build(destination, "audience.snapshot", data, profile_id=pid)
                    )
                    counts.profiles += 1
                    counts.rows += 1
                WebhookDelivery.objects.bulk_create(deliveries)
                _kick()
    Destination.objects.filter(pk=destination.pk).update(outbox_cursor=run.outbox_to)
    return counts


def webhook_erased_enqueue(identifiers: Sequence[tuple[str, str]]) -> int:
    """A signed ``profile.erased`` message to every enabled webhook destination
    whose identifier the person had (in its hashing); the number queued."""
    from apps.identity.services import identity_rules_load

    rules = identity_rules_load()
    normalized: dict[str, list[str]] = {}
    for kind, value in identifiers:
        clean = rules.normalize(kind, value)
        if clean and clean not in normalized.setdefault(kind, []):
            normalized[kind].append(clean)
    queued = []
    for destination in Destination.objects.filter(kind=DestinationKind.WEBHOOK, enabled=True):
        values = normalized.get(destination.identifier_type, [])
        if not values:
            continue
        data = {"profiles": [_profile_ref(destination, v) for v in values]}
        queued.append(delivery_build(destination, "profile.erased", data))
    WebhookDelivery.objects.bulk_create(queued)
    if queued:
        _kick()
    return len(queued)


# -- delivering ----------------------------------------------------------------------


def _lease(limit: int) -> list[int]:
    now = timezone.now()
    with transaction.atomic():
        due = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id")
            .values_list("id", flat=True)[:limit]
        )
        WebhookDelivery.objects.filter(pk__in=due).update(
            next_attempt_at=now + timedelta(seconds=LEASE_SECONDS)
        )
    return due


class AddressRefused(OSError):
    """The webhook's host resolves to an address deliveries may not go to."""


def checked_addresses(host: str, port: int) -> list[tuple[Any, ...]]:
    """The host resolved once: its (family, type, proto, sockaddr) entries, each
    allowed (kinds.address_is_public), or ``AddressRefused`` if any one is not
    (a name that points into our network at all is refused). Done at each
    attempt, since what a name resolves to can change; the attempt then connects
    to these very addresses (``PinnedHTTPConnection``), never resolving again, so
    a rebinding DNS cannot send the connection elsewhere than what was checked."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"cannot resolve the host: {exc}") from exc
    if not infos:
        raise AddressRefused("the host resolves to no address")
    for info in infos:
        if not address_is_public(str(info[4][0])):
            raise AddressRefused("the host resolves to a private or loopback address")
    return [(family, kind, proto, sockaddr) for family, kind, proto, _, sockaddr in infos]


def _connect_pinned(addresses: Sequence[tuple[Any, ...]], timeout: float | None) -> socket.socket:
    # Each checked address in turn (as socket.create_connection tries each one
    # it resolved), never a name.
    last: OSError | None = None
    for family, kind, proto, sockaddr in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last or OSError("no address to connect to")


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to ``host`` (its Host header) made to the addresses
    checked for it, not to whatever the host resolves to when connecting."""

    def __init__(
        self, host: str, port: int, *, addresses: Sequence[tuple[Any, ...]], timeout: float
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = list(addresses)

    def connect(self) -> None:
        self.sock = _connect_pinned(self.addresses, self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As ``PinnedHTTPConnection``, in TLS: SNI and the certificate are checked
    against the host's name (the system's trusted roots), not the address."""

    def __init__(
        self, host: str, port: int, *, addresses: Sequence[tuple[Any, ...]], timeout: float
    ) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.addresses = list(addresses)

    def connect(self) -> None:
        sock = _connect_pinned(self.addresses, self.timeout)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    problem = webhook_url_problem(url)
    if problem:
        raise AddressRefused(f"url {problem}")
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    addresses = checked_addresses(host, port)
    connection_class = PinnedHTTPSConnection if https else PinnedHTTPConnection
    connection = connection_class(host, port, addresses=addresses, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={**headers, "content-type": "application/json", "user-agent": USER_AGENT},
        )
        response = connection.getresponse()
        response.read(64 * 1024)
        return response.status
    finally:
        connection.close()


def delivery_attempt(delivery_id: int) -> str:
    """One attempt of one delivery; its status afterwards."""
    delivery = WebhookDelivery.objects.select_related("destination").get(pk=delivery_id)
    destination = delivery.destination
    if delivery.status != DeliveryStatus.PENDING:
        return delivery.status
    if not destination.enabled:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.CANCELLED)
        return DeliveryStatus.CANCELLED
    if (
        delivery.profile_id is not None
        and not profiles_allowed(destination).filter(pk=delivery.profile_id).exists()
    ):
        # Consent is checked again at each attempt: a message queued before the
        # person withdrew (retried for a day, or retried from the dead letters)
        # does not leave after it.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.CANCELLED, body=""
        )
        return DeliveryStatus.CANCELLED
    body = delivery.body.encode()
    status_code: int | None = None
    error = ""
    try:
        headers = signed_headers(webhook_secret_of(destination), delivery.message_id, body)
    except (SecretDecryptError, ValueError) as exc:
        # Nothing is sent unsigned: a failed attempt, retried (the key may be
        # put back), dead-lettered at the end like any other.
        error = f"webhook secret: {exc}"[:500]
        logger.error(
            "webhook destination %s: its secret is unusable (%s)",
            destination.pk,
            type(exc).__name__,
        )
    else:
        try:
            status_code = _post(
                destination.settings["url"],
                body,
                headers,
                min(destination.settings.get("timeout_seconds", 10), WEBHOOK_MAX_TIMEOUT),
            )
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # http.client quotes the path and query it refused (InvalidURL): a
            # ?token= there must not reach admin or the logs.
            error = url_redacted(f"{type(exc).__name__}: {exc}", destination.settings["url"])
            error = error[:500]
    now = timezone.now()
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = error or (
        f"HTTP {status_code}" if status_code and status_code >= 300 else ""
    )
    if status_code is not None and 200 <= status_code < 300:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        # Delivered, the body is needed no more: it names a person.
        delivery.body = ""
    elif status_code == 410:
        from .services import destination_disable

        delivery.status = DeliveryStatus.CANCELLED
        destination_disable(destination_id=destination.pk, reason="the endpoint answered 410 Gone")
        WebhookDelivery.objects.filter(
            destination=destination, status=DeliveryStatus.PENDING
        ).exclude(pk=delivery.pk).update(status=DeliveryStatus.CANCELLED)
        logger.warning("webhook destination %s disabled: 410 Gone", destination.pk)
    else:
        delays = retry_delays()
        if delivery.attempts > len(delays):
            delivery.status = DeliveryStatus.DEAD
            logger.warning(
                "webhook delivery %s dead after %d attempts", delivery.pk, delivery.attempts
            )
        else:
            delay = jittered(delays[delivery.attempts - 1])
            delivery.next_attempt_at = now + timedelta(seconds=delay)
    delivery.save(
        update_fields=[
            "attempts",
            "last_status_code",
            "last_error",
            "status",
            "delivered_at",
            "next_attempt_at",
            "body",
        ]
    )
    logger.info(
        "webhook delivery %s to destination %s: %s (attempt %d)",
        delivery.pk,
        destination.pk,
        status_code or "no answer",
        delivery.attempts,
    )
    return delivery.status


def webhooks_deliver_due(*, limit: int = 200) -> int:
    """Attempt the deliveries that are due (leased, so two workers never take one)."""
    attempted = 0
    for delivery_id in _lease(limit):
        delivery_attempt(delivery_id)
        attempted += 1
    return attempted


@transaction.atomic
def deliveries_retry(*, delivery_ids: Sequence[int]) -> int:
    """Dead letters (or cancelled ones) back in the queue, attempts from zero."""
    return WebhookDelivery.objects.filter(
        pk__in=list(delivery_ids),
        status__in=[DeliveryStatus.DEAD, DeliveryStatus.CANCELLED],
        destination__enabled=True,
    ).update(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now())


def webhook_mapping_enqueue(*, kind: str, key: str, action: str, version: Any) -> int:
    """A ``mapping.changed`` message (placement, variant or rule saved or deleted)
    to every enabled webhook destination; the number queued."""
    data = {"kind": kind, "key": key, "action": action, "version": version}
    with transaction.atomic():
        queued = [
            delivery_build(destination, "mapping.changed", data)
            for destination in Destination.objects.filter(
                kind=DestinationKind.WEBHOOK, enabled=True
            )
        ]
        WebhookDelivery.objects.bulk_create(queued)
        if queued:
            _kick()
    return len(queued)
