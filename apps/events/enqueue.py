"""Handing stored events to the processing workers.

A Celery publish costs a web process about as much CPU as the rest of a
single-event request (kombu builds a Redis client per message), and gives the
workers one task per request. So, with a real broker, each web process gathers
the ids of the events it stored for a short while (``CDP_PROCESS_COALESCE_MS``,
100 ms by default) and publishes them together from a background thread, in
tasks of at most ``CDP_PROCESS_BATCH_SIZE`` ids.

Nothing is at risk meanwhile: the events are committed before the client hears
200, and ids that never reach the broker (the process dies, the broker is down)
are found by the pending-event sweep (``events_process_pending``). With eager
tasks (the quickstart) or a delay of 0, ids are published at once.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Sequence

from django.conf import settings

logger = logging.getLogger(__name__)


def publish(ids: Sequence[int]) -> None:
    """One processing task for these ids, now. Never raises: the sweep is the net."""
    from .tasks import events_process as events_process_task

    try:
        # A short argsrepr: Celery would otherwise build a repr of every id for its
        # logs and monitoring.
        events_process_task.apply_async(
            (list(ids),), argsrepr=f"[{len(ids)} event ids]", kwargsrepr="{}"
        )
    except Exception:
        logger.warning("could not enqueue processing of %d events; the sweep will", len(ids))


class Coalescer:
    """Ids gathered in this process, published together after ``delay`` seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[int] = []
        self._pending = threading.Event()
        self._pid: int | None = None
        self._delay = 0.1
        self.tasks_published = 0  # for tests and debugging

    def add(self, ids: Sequence[int], *, delay: float) -> None:
        with self._lock:
            if self._pid != os.getpid():
                # First use in this process (gunicorn forks workers after import):
                # ids of a parent are not ours to publish, and its thread is gone.
                self._pid = os.getpid()
                self._ids = []
                self._pending = threading.Event()
                thread = threading.Thread(target=self._run, name="cdp-enqueue", daemon=True)
                thread.start()
                atexit.register(self.flush)
            self._delay = delay
            self._ids.extend(ids)
            self._pending.set()

    def _run(self) -> None:
        pending = self._pending
        while True:
            pending.wait()
            time.sleep(self._delay)  # let more ids gather
            pending.clear()  # before taking them: ids added from now wake us again
            self.flush()

    def flush(self) -> None:
        with self._lock:
            ids, self._ids = self._ids, []
        size = max(1, settings.CDP["PROCESS_BATCH_SIZE"])
        for start in range(0, len(ids), size):
            publish(ids[start : start + size])
            self.tasks_published += 1


coalescer = Coalescer()


def events_enqueue(ids: Sequence[int]) -> None:
    """Have these stored events processed (called after their commit)."""
    from .tasks import events_process as events_process_task

    delay_ms = settings.CDP["PROCESS_COALESCE_MS"]
    if delay_ms <= 0 or events_process_task.app.conf.task_always_eager:
        publish(ids)
    else:
        coalescer.add(ids, delay=delay_ms / 1000)
