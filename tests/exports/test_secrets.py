"""Webhook signing secrets encrypted at rest: the column holds no plain secret,
deliveries are still signed so that a receiver on loopback verifies them, a
wrong key is a clear error (on the delivery, in admin, from the command) rather
than a crash, keys rotate, and the migration encrypts what was stored plain."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from apps.common.crypto import secret_decrypt, secret_is_current
from apps.consent.models import Purpose
from apps.exports.models import Destination, WebhookDelivery
from apps.exports.services import destination_secret_rotate, webhooks_push_all
from apps.exports.webhooks import webhook_secret_of, webhooks_deliver_due

from .conftest import members_set
from .receiver import Receiver, receiver_running

OLD = "old-" + secrets.token_urlsafe(50)
NEW = "new-" + secrets.token_urlsafe(50)


def _keys(settings: Any, *keys: str) -> None:
    settings.CDP = {**settings.CDP, "SECRETS_KEYS": list(keys)}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiver_running() as running:
        yield running


@pytest.fixture
def hook(destination: Any, receiver: Receiver) -> Any:
    def make(segments: list[Any]) -> Destination:
        target, secret = destination(
            "webhook", segments, settings={"url": receiver.url, "timeout_seconds": 5}
        )
        receiver.secret = secret
        return target

    return make


def _raw_row(pk: int) -> dict[str, str]:
    table = connection.ops.quote_name(Destination._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [pk])
        names = [c[0] for c in cursor.description]
        return {n: str(v) for n, v in zip(names, cursor.fetchone(), strict=True)}


def _push_and_deliver(segment: Any, people: list[Any]) -> None:
    members_set(segment, people)
    webhooks_push_all()
    webhooks_deliver_due()


@pytest.mark.django_db
def test_the_table_holds_no_plain_secret(destination: Any, audience: Any) -> None:
    # when a webhook is made
    target, secret = destination(
        "webhook", [audience("shoes", [])], settings={"url": "https://h.example.com/"}
    )
    # then the secret (shown once) is nowhere in its row, in any spelling
    assert secret.startswith("whsec_")
    raw = base64.b64decode(secret.removeprefix("whsec_"))
    row = _raw_row(target.pk)
    assert "webhook_secret" not in row
    for value in row.values():
        assert secret not in value
        assert secret.removeprefix("whsec_") not in value
        assert raw.hex() not in value
    # the column holds a token the configured key decrypts to it
    assert secret_decrypt(row["webhook_secret_encrypted"]) == secret
    # and a rotation replaces it by another encrypted one
    rotated = destination_secret_rotate(destination=target)
    row = _raw_row(target.pk)
    assert rotated != secret and rotated not in "".join(row.values())
    assert secret_decrypt(row["webhook_secret_encrypted"]) == rotated


@pytest.mark.django_db
def test_deliveries_are_signed_so_a_receiver_verifies_them_across_a_key_rotation(
    settings: Any, person: Any, audience: Any, hook: Any, receiver: Receiver
) -> None:
    # given a webhook whose secret was encrypted under the old key
    _keys(settings, OLD)
    shoes = audience("shoes", [])
    target = hook([shoes])
    ada, bob, cy = person("ada"), person("bob"), person("cy")
    _push_and_deliver(shoes, [ada])
    # when a new key is put first (the old one still decrypts)
    _keys(settings, NEW, OLD)
    _push_and_deliver(shoes, [ada, bob])
    # and the secrets are re-encrypted, then the old key dropped
    call_command("secrets_reencrypt")
    _keys(settings, NEW)
    _push_and_deliver(shoes, [ada, bob, cy])
    # then every message was verified by the receiver with the one whsec_ secret
    assert [r.why for r in receiver.received] == ["ok", "ok", "ok"]
    ids = [orjson.loads(r.body)["data"]["profile"]["id"] for r in receiver.received]
    assert ids == ["ada", "bob", "cy"]
    target.refresh_from_db()
    assert secret_is_current(target.webhook_secret_encrypted)
    assert webhook_secret_of(target) == receiver.secret


@pytest.mark.django_db
def test_a_wrong_key_fails_the_attempt_with_its_reason_and_sends_nothing(
    settings: Any, person: Any, audience: Any, hook: Any, receiver: Receiver
) -> None:
    # given a webhook made under the old key, and a message queued for it
    _keys(settings, OLD)
    shoes = audience("shoes", [])
    target = hook([shoes])
    members_set(shoes, [person("ada")])
    webhooks_push_all()
    # when the key is replaced without keeping the old one
    _keys(settings, NEW)
    assert webhooks_deliver_due() == 1
    # then nothing left (unsigned or badly signed), the attempt failed naming the
    # problem, and the delivery waits for its retry
    assert receiver.received == []
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error.startswith("webhook secret: the stored secret cannot be decrypted")
    assert "CDP_SECRETS_KEY" in delivery.last_error
    # the admin page says so too (not a 500)
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin)
    page = client.get(f"/admin/exports/destination/{target.pk}/change/")
    assert page.status_code == 200
    assert "set, but unusable: the stored secret cannot be decrypted" in page.content.decode()
    # and the command fails naming the destination, changing nothing
    before = Destination.objects.get().webhook_secret_encrypted
    with pytest.raises(CommandError, match=target.key):
        call_command("secrets_reencrypt")
    assert Destination.objects.get().webhook_secret_encrypted == before
    # when the old key is put back (after the new one), the retry goes out signed
    _keys(settings, NEW, OLD)
    webhooks_deliver_due()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert [r.why for r in receiver.received] == ["ok"]
    assert receiver.received[0].headers["webhook-id"] == delivery.message_id


@pytest.mark.django_db
def test_the_reencrypt_command_counts_checks_and_is_idempotent(
    settings: Any, destination: Any, capsys: Any
) -> None:
    # given two webhooks under the old key and one with no secret (a file kind)
    _keys(settings, OLD)
    a, secret_a = destination("webhook", settings={"url": "https://a.example.com/"})
    b, secret_b = destination("webhook", settings={"url": "https://b.example.com/"})
    destination("optimizely")
    _keys(settings, NEW, OLD)
    # when checked: two to do, nothing written, a failure for the deploy script
    with pytest.raises(CommandError, match="2 secret"):
        call_command("secrets_reencrypt", "--check")
    assert not secret_is_current(Destination.objects.get(pk=a.pk).webhook_secret_encrypted)
    # when run: both move under the new key, keeping their secrets
    call_command("secrets_reencrypt")
    assert "2 secret(s) re-encrypted, 0 already under the first key" in capsys.readouterr().out
    _keys(settings, NEW)
    assert webhook_secret_of(Destination.objects.get(pk=a.pk)) == secret_a
    assert webhook_secret_of(Destination.objects.get(pk=b.pk)) == secret_b
    # and again: nothing to do, the check passes
    call_command("secrets_reencrypt")
    assert "0 secret(s) re-encrypted, 2 already under the first key" in capsys.readouterr().out
    call_command("secrets_reencrypt", "--check")


BEFORE = [("exports", "0003_exportfile_expire_error")]
AFTER = [("exports", "0004_webhook_secret_encrypted")]


def _migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_plain_secrets_and_back(settings: Any) -> None:
    _keys(settings, OLD)
    try:
        # given a destination stored before: its secret in the plain column
        old_apps = _migrate(BEFORE)
        purpose = Purpose.objects.create(key="ads", name="Ads")
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        old = old_apps.get_model("exports", "Destination")
        pk = old.objects.create(
            key="old-hook", name="Old", kind="webhook", purpose_id=purpose.pk, webhook_secret=secret
        ).pk
        old.objects.create(key="a-file", name="File", kind="optimizely", purpose_id=purpose.pk)
        # when migrated
        _migrate(AFTER)
        # then the plain column is gone, the new one holds the encrypted secret
        row = _raw_row(pk)
        assert "webhook_secret" not in row
        assert secret not in "".join(row.values())
        assert webhook_secret_of(Destination.objects.get(pk=pk)) == secret
        assert Destination.objects.get(key="a-file").webhook_secret_encrypted == ""
        # when migrated back: the plain secret again (what the old code signs with)
        back = _migrate(BEFORE).get_model("exports", "Destination")
        assert back.objects.get(pk=pk).webhook_secret == secret
        assert back.objects.get(key="a-file").webhook_secret == ""
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.mark.django_db
def test_saving_a_stale_form_keeps_the_secret_and_cursor_others_wrote(
    destination: Any, audience: Any, settings: Any
) -> None:
    from apps.exports.services import destination_save

    # given a webhook loaded into a form (an instance read now) ...
    _keys(settings, OLD)
    target, secret = destination(
        "webhook", [audience("shoes", [])], settings={"url": "https://h.example.com/"}
    )
    stale = Destination.objects.get(pk=target.pk)
    # ... while, before it is saved, the secret is re-encrypted under a new key
    # and delivery moves the cursor on
    _keys(settings, NEW, OLD)
    call_command("secrets_reencrypt", stdout=None)
    Destination.objects.filter(pk=target.pk).update(outbox_cursor=stale.outbox_cursor + 41)
    # when the form is saved with an edit of its own
    stale.name = "Renamed"
    destination_save(destination=stale)
    # then the edit is kept, and so are the others' writes: the secret is the
    # re-encrypted one (readable without the old key), the cursor did not rewind
    fresh = Destination.objects.get(pk=target.pk)
    assert fresh.name == "Renamed"
    assert fresh.outbox_cursor == stale.outbox_cursor + 41
    _keys(settings, NEW)
    assert secret_is_current(fresh.webhook_secret_encrypted)
    assert webhook_secret_of(fresh) == secret
