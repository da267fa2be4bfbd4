"""Webhooks: signed messages verified by a receiver on loopback (and a replay
refused), retries after failures, the dead-letter list, 410 disabling the
endpoint, consent and minimum size, erasure and mapping changes passed on."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from apps.consent.services.dsr import dsr_create, dsr_transition
from apps.consent.services.erasure import erasure_run, erasure_start
from apps.exports.kinds import SettingsError
from apps.exports.models import Destination, ExportRun, WebhookDelivery
from apps.exports.services import webhooks_push_all
from apps.exports.webhooks import (
    deliveries_retry,
    jittered,
    retry_delays,
    webhooks_deliver_due,
)

from .conftest import members_set
from .receiver import Receiver, receiver_running

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiver_running() as running:
        yield running


@pytest.fixture
def hook(destination: Any, receiver: Receiver) -> Any:
    def make(segments: list[Any], **fields: Any) -> Destination:
        target, secret = destination(
            "webhook", segments, settings={"url": receiver.url, "timeout_seconds": 5}, **fields
        )
        receiver.secret = secret
        return target

    return make


def _bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [orjson.loads(r.body) for r in receiver.received if r.verified]


def test_membership_changes_arrive_signed_and_verified(
    person: Any, audience: Any, hook: Any, receiver: Receiver
) -> None:
    # given: a webhook on "shoes", made before anyone joined
    ada, bob = person("ada"), person("bob")
    shoes = audience("shoes", [])
    target = hook([shoes])
    assert receiver.secret.startswith("whsec_")
    # when: two people join, the push runs and deliveries go out
    members_set(shoes, [ada, bob])
    assert webhooks_push_all() == 1
    assert webhooks_deliver_due() == 2
    # then: two messages, each verified by the spec's rules, about those two
    assert [r.why for r in receiver.received] == ["ok", "ok"]
    bodies = _bodies(receiver)
    assert {b["type"] for b in bodies} == {"membership.changed"}
    assert sorted(b["data"]["profile"]["id"] for b in bodies) == ["ada", "bob"]
    assert all(b["data"]["segments"] == ["shoes"] for b in bodies)
    assert all(b["data"]["changes"][0]["kind"] == "entered" for b in bodies)
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(ids) == 2 and all(i.startswith("msg_") for i in ids)
    # the run is recorded, the deliveries are done (and keep no body)
    run = ExportRun.objects.get(destination=target)
    assert (run.status, run.mode, run.profiles, run.rows) == ("succeeded", "incremental", 2, 2)
    assert set(WebhookDelivery.objects.values_list("status", "body")) == {("delivered", "")}
    # and nothing more is pushed when nothing changed
    assert webhooks_push_all() == 0


def test_a_replay_outside_the_tolerance_and_a_forgery_are_refused(
    person: Any, audience: Any, hook: Any, receiver: Receiver
) -> None:
    # given: one delivered, verified message
    shoes = audience("shoes", [])
    hook([shoes])
    members_set(shoes, [person("ada")])
    webhooks_push_all()
    webhooks_deliver_due()
    original = receiver.received[0]
    assert original.verified
    # when: the same request is sent again six minutes later
    receiver.clock_offset = 6 * 60
    replay_ok, replay_why = receiver.verify(original.headers, original.body)
    # then: refused for its timestamp, though its signature is genuine
    assert (replay_ok, replay_why) == (False, "timestamp outside the tolerance")
    # and a changed body under the original headers is refused at once
    receiver.clock_offset = 0
    forged = original.body.replace(b"ada", b"eve")
    assert receiver.verify(original.headers, forged) == (False, "no signature matches")
    # a replay through HTTP gets the receiver's 401
    receiver.clock_offset = 6 * 60
    conn = http.client.HTTPConnection("127.0.0.1", int(receiver.url.split(":")[2].split("/")[0]))
    conn.request("POST", "/hooks/cdp", body=original.body, headers=original.headers)
    assert conn.getresponse().status == 401
    conn.close()


def test_failed_deliveries_are_retried_with_the_same_id_until_they_succeed(
    person: Any, audience: Any, hook: Any, receiver: Receiver
) -> None:
    # given: a receiver that fails twice, then accepts
    receiver.answers = [500, 503, 200]
    shoes = audience("shoes", [])
    hook([shoes])
    members_set(shoes, [person("ada")])
    webhooks_push_all()
    # when: three rounds of delivery (retry delays are 0 s in these tests)
    for _ in range(3):
        webhooks_deliver_due()
    # then: delivered at the third attempt, every attempt the same message id,
    # each freshly signed
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len(receiver.received) == 3 and all(r.verified for r in receiver.received)


def test_after_the_last_attempt_a_delivery_is_a_dead_letter_and_can_be_retried(
    person: Any, audience: Any, hook: Any, receiver: Receiver
) -> None:
    # given: a receiver that always fails
    receiver.answers = [503]
    shoes = audience("shoes", [])
    hook([shoes])
    members_set(shoes, [person("ada")])
    webhooks_push_all()
    # when: more rounds than attempts (1 + 2 retries)
    for _ in range(5):
        webhooks_deliver_due()
    # then: a dead letter after three attempts, no more tries
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("dead", 3, "HTTP 503")
    assert len(receiver.received) == 3
    # when: the receiver recovers and an administrator retries the dead letter
    receiver.answers = [200]
    receiver.received.clear()
    assert deliveries_retry(delivery_ids=[delivery.pk]) == 1
    webhooks_deliver_due()
    # then
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)


def test_a_410_disables_the_endpoint_and_cancels_what_is_queued(
    person: Any, audience: Any, hook: Any, receiver: Receiver
) -> None:
    # given: two messages queued for a receiver that is gone
    receiver.answers = [410]
    shoes = audience("shoes", [])
    target = hook([shoes], schedule="*/5 * * * *")
    assert target.periodic_task is not None
    members_set(shoes, [person("ada"), person("bob")])
    webhooks_push_all()
    # when
    webhooks_deliver_due()
    # then: one attempt only; the destination is disabled with the reason, its
    # beat entry gone, the other message cancelled
    target.refresh_from_db()
    assert target.enabled is False
    assert "410" in target.disabled_reason
    assert target.periodic_task is None
    assert len(receiver.received) == 1
    assert sorted(WebhookDelivery.objects.values_list("status", flat=True)) == [
        "cancelled",
        "cancelled",
    ]
    # and nothing is pushed to it any more
    members_set(shoes, [person("cy")])
    assert webhooks_push_all() == 0


def test_only_consented_people_and_activated_segments_are_pushed(
    person: Any, audience: Any, hook: Any, receiver: Receiver
) -> None:
    # given: "shoes" (no minimum) and "tiny" (minimum 10)
    shoes = audience("shoes", [])
    tiny = audience("tiny", [], min_size=10)
    target = hook([shoes, tiny])
    yes, no = person("yes"), person("no", consent=False)
    # when: both join both segments
    members_set(shoes, [yes, no])
    members_set(tiny, [yes, no])
    webhooks_push_all()
    webhooks_deliver_due()
    # then: one message, about "yes" in "shoes" only
    bodies = _bodies(receiver)
    assert [b["data"]["profile"]["id"] for b in bodies] == ["yes"]
    assert [c["segment"] for c in bodies[0]["data"]["changes"]] == ["shoes"]
    run = ExportRun.objects.get(destination=target)
    assert run.skipped_consent == 1
    assert run.segments_skipped == ["tiny"]


def test_a_full_run_sends_a_snapshot_of_current_members(
    person: Any, audience: Any, hook: Any, receiver: Receiver
) -> None:
    from .conftest import run_now

    # given
    ada = person("ada", email="ada@example.com")
    shoes = audience("shoes", [ada])
    target = hook([shoes], identifier_type="email", hashing="sha256")
    # when
    run = run_now(target)
    webhooks_deliver_due()
    # then: the hashed email, its segments
    import hashlib

    (body,) = _bodies(receiver)
    assert body["type"] == "audience.snapshot"
    assert body["data"] == {
        "profile": {
            "type": "email",
            "hashing": "sha256",
            "id": hashlib.sha256(b"ada@example.com").hexdigest(),
        },
        "segments": ["shoes"],
    }
    assert run.profiles == 1


def test_erasure_is_passed_on_as_a_signed_profile_erased_message(
    person: Any, audience: Any, hook: Any, receiver: Receiver
) -> None:
    # given: Ada, in "shoes", with a membership message queued but not delivered
    ada = person("ada", email="ada@example.com")
    shoes = audience("shoes", [])
    hook([shoes])
    members_set(shoes, [ada])
    webhooks_push_all()
    assert WebhookDelivery.objects.filter(profile_id=ada.pk).count() == 1
    # when: she is erased
    request = dsr_create(type="erasure", subject="user_id:ada")
    dsr_transition(request=request, status="verified")
    erasure_start(request=request)
    assert erasure_run(request_id=request.id) is True
    webhooks_deliver_due()
    # then: the queued message about her is gone; the destination got a signed
    # profile.erased naming her by its identifier
    assert not WebhookDelivery.objects.filter(profile_id=ada.pk).exists()
    bodies = _bodies(receiver)
    assert [b["type"] for b in bodies] == ["profile.erased"]
    assert bodies[0]["data"]["profiles"] == [{"type": "user_id", "hashing": "none", "id": "ada"}]
    request.refresh_from_db()
    assert request.status == "completed"


def test_mapping_changes_are_pushed(
    audience: Any, hook: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    from apps.personalization.services import placement_create

    # given
    hook([audience("shoes", [])])
    # when: a placement is made (the signal is sent after commit)
    with django_capture_on_commit_callbacks(execute=True):
        placement_create(key="home_hero", name="Home hero")
    webhooks_deliver_due()
    # then
    bodies = _bodies(receiver)
    assert [(b["type"], b["data"]["kind"], b["data"]["key"]) for b in bodies] == [
        (
            "mapping.changed",
            "placement",
            "home_hero",
        )
    ]


def test_the_default_retry_schedule_lasts_more_than_a_day_even_with_the_least_jitter(
    settings: Any,
) -> None:
    settings.CDP = {k: v for k, v in settings.CDP.items() if k != "EXPORT_WEBHOOK_RETRY_DELAYS"}
    delays = retry_delays()
    assert delays == sorted(delays)  # backing off
    assert sum(d * 0.75 for d in delays) > 24 * 3600
    assert all(0.75 * d <= jittered(d) <= 1.25 * d for d in delays)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5:9200/_bulk",
        "http://[::1]/hook",
        "http://localhost/hook",
    ],
)
def test_a_webhook_into_the_private_network_is_refused(
    url: str, settings: Any, destination: Any, audience: Any
) -> None:
    # given production's default: no private networks
    settings.CDP = {**settings.CDP, "EXPORT_WEBHOOK_PRIVATE_NETWORKS": False}

    # then the URL is refused when the destination is saved
    with pytest.raises(SettingsError) as refused:
        destination("webhook", [audience("shoes", [])], settings={"url": url})
    assert "url" in refused.value.errors


@pytest.mark.parametrize("url", ["http://h:99999/", "http://h:abc/", "http://[::1"])
def test_a_malformed_webhook_url_is_refused_with_its_field(
    url: str, destination: Any, audience: Any
) -> None:
    with pytest.raises(SettingsError) as refused:
        destination("webhook", [audience("shoes", [])], settings={"url": url})
    assert "url" in refused.value.errors


def test_a_host_that_resolves_into_the_private_network_fails_its_attempt(
    person: Any, audience: Any, hook: Any, receiver: Receiver, settings: Any
) -> None:
    # given a webhook saved while private networks were allowed, to a name that
    # resolves to loopback (checked again at each attempt: what a name resolves
    # to can change, and "0x7f000001" is a name to the URL parser)
    ada = person("ada")
    shoes = audience("shoes", [])
    target = hook([shoes])
    target.settings = {**target.settings, "url": receiver.url.replace("127.0.0.1", "0x7f000001")}
    target.save(update_fields=["settings"])
    members_set(shoes, [ada])
    webhooks_push_all()

    # when private networks are off at delivery
    settings.CDP = {**settings.CDP, "EXPORT_WEBHOOK_PRIVATE_NETWORKS": False}
    webhooks_deliver_due()

    # then nothing reached the receiver, and the attempt is a recorded failure
    assert receiver.received == []
    delivery = WebhookDelivery.objects.get(destination=target)
    assert delivery.attempts >= 1 and delivery.status in ("pending", "dead")
    assert delivery.last_error.startswith("AddressRefused")


def test_a_message_queued_before_consent_was_withdrawn_does_not_leave(
    person: Any, audience: Any, hook: Any, receiver: Receiver, ads: Any
) -> None:
    # given a membership change queued for ada
    from apps.consent.services.consent import consent_withdraw

    ada = person("ada")
    shoes = audience("shoes", [])
    target = hook([shoes])
    members_set(shoes, [ada])
    webhooks_push_all()
    queued = WebhookDelivery.objects.get(destination=target, profile_id=ada.pk)

    # when she withdraws before it is delivered
    consent_withdraw(profile_id=ada.pk, purpose=ads.key, source="test")
    webhooks_deliver_due()

    # then it is cancelled, its body dropped, and the receiver got nothing of hers
    queued.refresh_from_db()
    assert (queued.status, queued.body) == ("cancelled", "")
    assert receiver.received == []
