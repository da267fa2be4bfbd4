"""Webhook URLs carry no credentials: user info (``user:pass@``) is refused on
save and at each attempt (the signature authenticates the CDP), and a query
string, which may hold a receiver's ``?token=``, never reaches the stored error,
admin or the logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.exports.kinds import SettingsError, url_redacted, webhook_url_problem
from apps.exports.models import WebhookDelivery
from apps.exports.services import webhooks_push_all
from apps.exports.webhooks import webhooks_deliver_due

from .conftest import members_set
from .receiver import Receiver, receiver_running

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiver_running() as running:
        yield running


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@hooks.example.com/cdp",
        "https://user@hooks.example.com/cdp",
        "https://:pass@hooks.example.com/cdp",
        "https://@hooks.example.com/cdp",
        "https://a%40b:p%3Aq@hooks.example.com:8443/cdp",
    ],
)
def test_a_webhook_url_with_user_info_is_refused_on_save(
    url: str, destination: Any, audience: Any
) -> None:
    with pytest.raises(SettingsError) as refused:
        destination("webhook", [audience("shoes", [])], settings={"url": url})
    assert "must not carry a user name or password" in refused.value.errors["url"]


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/cdp?token=abc",
        "https://hooks.example.com/u/@me",
        "https://hooks.example.com/cdp?to=a@b.com",
    ],
)
def test_an_at_sign_outside_the_host_part_is_not_user_info(url: str) -> None:
    assert webhook_url_problem(url) == ""


def test_a_stored_url_with_user_info_fails_its_attempt_and_sends_nothing(
    person: Any, audience: Any, destination: Any, receiver: Receiver
) -> None:
    # given a destination saved before the check (the JSON edited behind its back)
    ada = person("ada")
    shoes = audience("shoes", [])
    target, receiver.secret = destination(
        "webhook", [shoes], settings={"url": receiver.url, "timeout_seconds": 5}
    )
    url = receiver.url.replace("http://", "http://cdp:hunter2@")
    target.settings = {**target.settings, "url": url}
    target.save(update_fields=["settings"])
    members_set(shoes, [ada])
    webhooks_push_all()
    # when
    webhooks_deliver_due()
    # then
    assert receiver.received == []
    delivery = WebhookDelivery.objects.get(destination=target)
    assert delivery.attempts == 1
    assert "must not carry a user name or password" in delivery.last_error
    assert "hunter2" not in delivery.last_error


def test_a_failed_attempt_keeps_and_logs_no_query_string(
    person: Any,
    audience: Any,
    destination: Any,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a receiver URL whose query holds a token, with a character http.client
    # refuses to send (its InvalidURL message quotes the path and query)
    ada = person("ada")
    shoes = audience("shoes", [])
    target, receiver.secret = destination(
        "webhook", [shoes], settings={"url": receiver.url, "timeout_seconds": 5}
    )
    url = receiver.url.rstrip("/") + "/hook?token=s3cr3t-t0ken x"
    target.settings = {**target.settings, "url": url}
    target.save(update_fields=["settings"])
    members_set(shoes, [ada])
    webhooks_push_all()
    # when
    with caplog.at_level(logging.DEBUG):
        webhooks_deliver_due()
    # then the attempt failed with a reason, and the token is nowhere
    delivery = WebhookDelivery.objects.get(destination=target)
    assert delivery.attempts == 1 and delivery.last_error.startswith("InvalidURL")
    assert "s3cr3t" not in delivery.last_error and "[redacted]" in delivery.last_error
    assert "s3cr3t" not in caplog.text
    assert receiver.received == []


@given(
    token=st.text(st.characters(codec="ascii", exclude_characters="#&?/@ \t\n\r"), min_size=4),
)
def test_url_redacted_removes_the_query_and_the_user_info(token: str) -> None:
    url = f"https://u:{token}@hooks.example.com/cdp?key={token}"
    redacted = url_redacted(f"failed to reach {url}, key={token}", url)
    assert token not in redacted
    assert "hooks.example.com/cdp" in redacted
