"""One background refresher per process for the caches a decision reads.

The content mapping (mapping.py), the identity rules (decide.py), the allowed
origins (keys.py) and the consent configuration (apps/consent/selectors.py) are
kept per process and must be re-checked every so often. Without this module the
request that finds a copy due runs the queries on its own thread (1-3 ms, a few
requests a second: most of the decide p99). With it, a daemon thread does the
checks at each cache's interval and request threads only read the current copy.

**Bounds.** A cache whose refresher is on accepts a copy up to ``HARD_BOUND``
times its interval old; older (the refresher died, hangs on the database, or the
database is down) or absent (first request, a local change dropped it), the
request reloads it itself as before, so staleness stays bounded. While the
refresher runs, a change is visible within the interval plus the refresh time.

**Processes.** The thread starts lazily, on the first read of a cache, in the
process that reads (a gunicorn worker, never the master before a fork); a forked
child starts its own. It uses its own database connection (Django's are per
thread), marks it for closing after errors (``close_if_unusable_or_obsolete``,
as Django does at a request's end) and survives them: a failing task is logged
by name and exception class only (no personal data) and retried at its next
turn. ``CDP["DECIDE_REFRESHER"]`` off (the test settings): no thread, every
request checks when due, as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

HARD_BOUND = 5.0  # a copy this many intervals old is reloaded by the request
_MIN_WAIT = 0.02  # seconds; an interval of 0 does not spin the thread


@dataclass(slots=True)
class _Task:
    name: str
    interval: Callable[[], float]  # seconds
    refresh: Callable[[], object]
    due: float = 0.0


_tasks: list[_Task] = []
_lock = threading.Lock()
_thread: threading.Thread | None = None
_pid: int | None = None
_stop = threading.Event()
_paused = False  # refresher_stop(): no restart until refresher_resume()
_on_start: list[Callable[[bool], None]] = []


def refresh_task(name: str, interval: Callable[[], float], refresh: Callable[[], object]) -> None:
    """Register a cache's refresh (run every ``interval()`` seconds)."""
    if all(t.name != name for t in _tasks):
        _tasks.append(_Task(name=name, interval=interval, refresh=refresh))


def on_running(hook: Callable[[bool], None]) -> None:
    """``hook(True)`` when the refresher starts, ``hook(False)`` when it stops (for
    caches in lower apps, which cannot ask this module)."""
    _on_start.append(hook)


def _enabled() -> bool:
    return bool(settings.CDP.get("DECIDE_REFRESHER", True))


def max_age(interval: float) -> float:
    """How old a copy with this check interval may be when read by a request:
    ``interval`` without a refresher, ``HARD_BOUND`` intervals with one (started
    here if it is not running in this process yet)."""
    if not _enabled():
        return interval
    refresher_ensure()
    return interval * HARD_BOUND


def refresher_running() -> bool:
    thread = _thread
    return thread is not None and _pid == os.getpid() and thread.is_alive()


def refresher_ensure() -> None:
    global _thread, _pid
    if _paused or refresher_running():
        return
    with _lock:
        if _paused or refresher_running():
            return
        _stop.clear()
        for task in _tasks:
            task.due = 0.0
        thread = threading.Thread(target=_run, name="decide-refresher", daemon=True)
        _thread, _pid = thread, os.getpid()
        thread.start()
    for hook in _on_start:
        hook(True)


def refresher_stop(timeout: float = 5.0) -> None:
    """Stop this process's refresher and keep it stopped (tests, shutdown)."""
    global _paused
    _paused = True
    _stop.set()
    thread = _thread
    if thread is not None and thread.is_alive():
        thread.join(timeout)
    for hook in _on_start:
        hook(False)


def refresher_resume() -> None:
    global _paused
    _paused = False


def _run() -> None:
    try:
        while not _stop.is_set():
            now = time.monotonic()
            for task in list(_tasks):
                if task.due > now:
                    continue
                try:
                    # As a request does first: a connection a restart broke is replaced.
                    connection.close_if_health_check_failed()
                    task.refresh()
                except Exception as exc:
                    logger.warning(
                        "decide refresher: %s failed (%s)", task.name, type(exc).__name__
                    )
                finally:
                    connection.close_if_unusable_or_obsolete()
                task.due = time.monotonic() + max(task.interval(), _MIN_WAIT)
            nxt = min((t.due for t in _tasks), default=time.monotonic() + 1.0)
            _stop.wait(max(nxt - time.monotonic(), _MIN_WAIT))
    finally:
        connection.close()
