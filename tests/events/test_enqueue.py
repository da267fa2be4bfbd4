"""Handing stored events to the workers: the per-process gathering of ids."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.test import override_settings

from apps.events import enqueue
from apps.events.enqueue import Coalescer


def _cdp(**changes: Any) -> dict[str, Any]:
    from django.conf import settings

    return {**settings.CDP, **changes}


def test_a_broker_that_is_down_costs_one_try_per_flush(
    not_eager: None, broker_at: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given 1,200 gathered ids (three tasks' worth) and a broker nothing listens at
    coalescer = Coalescer()
    coalescer._ids = list(range(1200))
    with broker_at("redis://127.0.0.1:9/0"), override_settings(CDP=_cdp(PROCESS_BATCH_SIZE=500)):
        # when they are flushed
        coalescer.flush()
    # then one publish was tried, not three, and the ids are left to the sweep
    assert caplog.text.count("could not enqueue processing of 500 events") == 1
    assert coalescer.tasks_published == 0
    assert coalescer._ids == []


def test_a_thread_that_is_gone_is_started_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a coalescer whose thread has ended
    published: list[list[int]] = []
    monkeypatch.setattr(enqueue, "publish", lambda ids: published.append(list(ids)) or True)
    coalescer = Coalescer()
    gone = threading.Thread(target=lambda: None)
    gone.start()
    gone.join()
    coalescer._thread = gone
    # when ids arrive
    coalescer.add([1, 2, 3], delay=0.01)
    # then a new thread publishes them
    deadline = time.monotonic() + 5
    while not published and time.monotonic() < deadline:
        time.sleep(0.01)
    assert published == [[1, 2, 3]]
    assert coalescer._thread is not gone and coalescer._thread.is_alive()


def test_held_ids_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a limit of 10 ids held, and a thread that does not publish yet
    monkeypatch.setattr(enqueue, "MAX_HELD", 10)
    coalescer = Coalescer()
    coalescer._thread = threading.current_thread()  # "alive": no thread is started
    # when 25 ids arrive
    coalescer.add(list(range(25)), delay=1)
    # then the newest 10 are held (the sweep processes the others)
    assert coalescer._ids == list(range(15, 25))


def test_enqueue_never_raises_when_no_thread_can_start(
    not_eager: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # given a process that cannot start threads
    coalescer = Coalescer()
    monkeypatch.setattr(enqueue, "coalescer", coalescer)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with override_settings(CDP=_cdp(PROCESS_COALESCE_MS=100)):
        # when stored events are handed over
        enqueue.events_enqueue([7, 8])
    # then the request is not failed; the sweep will process them
    assert "could not gather 2 event ids" in caplog.text
