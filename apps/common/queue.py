"""Handing work to Celery, the same way with a broker and without one."""

from __future__ import annotations

from typing import Any


def task_send(task: Any, *args: Any) -> None:
    """Send ``task(*args)`` to the workers, or run it here and now when tasks run
    eagerly (the quickstart's embedded default).

    Not through ``delay()`` when eager: Celery's ``apply_async`` takes a producer
    from the broker pool even then (to learn its serializer), and with no broker
    configured kombu logs "No hostname was supplied" on every call.
    """
    if task.app.conf.task_always_eager:
        task.apply(args)
    else:
        task.delay(*args)
