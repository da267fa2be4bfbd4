"""The prefetching stream's transaction on PostgreSQL: it outlives a server's
idle-in-transaction timeout while its reader is slow, and leaves the session's
own setting as it was."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.db import connection

from apps.exports.selectors import CHUNK, chunked_sql

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="a server-side cursor and a PostgreSQL setting",
    ),
]


def _show() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW idle_in_transaction_session_timeout")
        return str(cursor.fetchone()[0])


def test_a_slow_reader_outlives_the_servers_idle_in_transaction_timeout() -> None:
    # given a session whose idle-in-transaction timeout (as a managed server may
    # set it) is far shorter than the reader's pause between chunks
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SET idle_in_transaction_session_timeout = '300ms'")
    try:
        total = CHUNK * 4
        sql = "SELECT g FROM generate_series(1, %s) AS g"

        # when the stream is read a chunk at a time, pausing 0.8 s after each
        # (the fetching thread waits, the transaction idle, meanwhile)
        seen: list[int] = []
        for chunk in chunked_sql(sql, [total], prefetch=True):
            seen.extend(row[0] for row in chunk)
            time.sleep(0.8)

        # then every row arrives, in order, and the session survived with its
        # own setting back (the stream's was for its transaction alone)
        assert seen == list(range(1, total + 1))
        assert _show() == "300ms"
    finally:
        connection.close()
