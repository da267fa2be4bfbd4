"""Segments migrations that run on a live database."""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection, connections
from django.db.migrations.executor import MigrationExecutor

BEFORE = ("segments", "0004_written_staging")
DROP = ("segments", "0005_segment_fk_indexes_covered")
INDEX = "segments_membership_segment_id_912e4c68"


def _migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


def _has_index() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [INDEX])
        return cursor.fetchone() is not None


@pytest.mark.django_db(transaction=True)
def test_dropping_the_segment_indexes_never_blocks_reads_of_memberships() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL locks")
    # given the indexes back, and a long transaction that has read memberships
    _migrate(BEFORE)
    assert _has_index()
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute("SELECT count(*) FROM segments_membership")
                holding.set()
                release.wait(20)
                cursor.execute("COMMIT")
        finally:
            connections.close_all()

    def migrate() -> None:
        try:
            _migrate(DROP)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)

    # when the migration runs meanwhile, and another session reads memberships
    migrator = threading.Thread(target=migrate)
    migrator.start()
    migrator.join(1.0)
    read: list[object] = []

    def reader() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '1s'")
                cursor.execute("SELECT count(*) FROM segments_membership")
                read.append(cursor.fetchone())
        except OperationalError as exc:
            read.append(exc)
        finally:
            connections.close_all()

    other = threading.Thread(target=reader)
    other.start()
    other.join(10)
    release.set()
    holder.join(10)
    migrator.join(30)

    # then the read did not wait for the migration, which finished afterwards
    assert read == [(0,)], read
    assert not errors and not migrator.is_alive()
    assert not _has_index()
