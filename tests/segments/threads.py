"""Work on a thread of its own, for the race tests on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections


def in_thread(work: Callable[[], Any], out: list[Any]) -> threading.Thread:
    """``work`` on a connection of its own; its result or exception lands in ``out``."""

    def run() -> None:
        try:
            out.append(work())
        except BaseException as exc:
            out.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread
