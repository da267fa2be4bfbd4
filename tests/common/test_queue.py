"""apps.common.queue.task_send: with no broker (the quickstart), work runs here,
without reaching for a broker."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from celery import shared_task

from apps.common.queue import task_send

ran: list[int] = []


@shared_task
def _record(n: int) -> None:
    ran.append(n)


def test_task_send_runs_eagerly_without_reaching_for_a_broker(
    broker_at: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given no broker: tasks run eagerly, as in the quickstart
    caplog.set_level(logging.WARNING)
    ran.clear()
    with broker_at(""):
        # when
        task_send(_record, 7)

    # then it ran, and nothing tried to connect (kombu: "No hostname was supplied")
    assert ran == [7]
    assert not [r for r in caplog.records if r.name.startswith(("kombu", "celery"))]
