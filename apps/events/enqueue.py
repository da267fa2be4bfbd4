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


# Ids held at most (a broker that is down for long): beyond, the oldest are let
# go to the sweep rather than grow the process.
MAX_HELD = 200_000


def publish(ids: Sequence[int]) -> bool:
    """One processing task for these ids, now; False if the broker refused it.
    Never raises: the sweep is the net."""
    from .tasks import events_process as events_process_task

    try:
        if events_process_task.app.conf.task_always_eager:
            # Run here and now. Not through apply_async: eager or not, it takes a
            # producer from the broker pool (to learn its serializer), and with no
            # broker configured kombu then logs "No hostname was supplied".
            events_process_task.apply((list(ids),))
            return True
        # A short argsrepr: Celery would otherwise build a repr of every id for its
        # logs and monitoring.
        events_process_task.apply_async(
            (list(ids),), argsrepr=f"[{len(ids)} event ids]", kwargsrepr="{}"
        )
    except Exception as exc:
        logger.warning(
            "could not enqueue processing of %d events (%s); the sweep will",
            len(ids),
            type(exc).__name__,
        )
        return False
    return True


class Coalescer:
    """Ids gathered in this process, published together after ``delay`` seconds."""

    def __init__(self) -> None:
        self._reset()
        self.tasks_published = 0  # for tests and debugging
        if hasattr(os, "register_at_fork"):
            # A forked child starts empty: its parent's ids are the parent's to
            # publish, and its lock may have been held by a thread that is not here.
            os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[int] = []
        self._pending = threading.Event()
        self._thread: threading.Thread | None = None
        self._delay = 0.1

    def add(self, ids: Sequence[int], *, delay: float) -> None:
        with self._lock:
            self._delay = delay
            self._ids.extend(ids)
            if len(self._ids) > MAX_HELD:
                dropped = len(self._ids) - MAX_HELD
                del self._ids[:dropped]
                logger.warning("let %d event ids go to the pending sweep", dropped)
            self._pending.set()
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._run, name="cdp-enqueue", daemon=True)
                thread.start()  # may raise (no threads left): events_enqueue catches it
                self._thread = thread

    def _run(self) -> None:
        pending = self._pending
        while True:
            pending.wait()
            time.sleep(self._delay)  # let more ids gather
            pending.clear()  # before taking them: ids added from now wake us again
            try:
                self.flush()
            except Exception:  # never let the thread die; the sweep is the net
                logger.exception("publishing gathered event ids failed")

    def flush(self) -> None:
        with self._lock:
            ids, self._ids = self._ids, []
        size = max(1, settings.CDP["PROCESS_BATCH_SIZE"])
        for start in range(0, len(ids), size):
            if not publish(ids[start : start + size]):
                # The broker is away: each try would wait for its timeout. The rest
                # goes to the sweep too.
                return
            self.tasks_published += 1


coalescer = Coalescer()


def events_enqueue(ids: Sequence[int]) -> None:
    """Have these stored events processed (called after their commit; never raises:
    the events are stored, and the sweep processes what is not handed over)."""
    from .tasks import events_process as events_process_task

    delay_ms = settings.CDP["PROCESS_COALESCE_MS"]
    if delay_ms <= 0 or events_process_task.app.conf.task_always_eager:
        publish(ids)
        return
    try:
        coalescer.add(ids, delay=delay_ms / 1000)
    except Exception:
        logger.exception("could not gather %d event ids; the sweep will process them", len(ids))
