"""Segments migrations that run on a live database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from django.db import OperationalError, connection, connections
from django.db.migrations.executor import MigrationExecutor

INDEXES = (("segments", "0004_written_staging"), ("segments", "0005_segment_fk_indexes_covered"))
CONSTRAINTS = (
    ("segments", "0006_iso_ts_without_subtransaction"),
    ("segments", "0007_segment_fk_constraints_dropped"),
)
INDEX = "segments_membership_segment_id_912e4c68"


def _migrate(target: tuple[str, str] | None = None) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target] if target else executor.loader.graph.leaf_nodes())


def _has_index() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [INDEX])
        return cursor.fetchone() is not None


def _has_segment_constraints() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM pg_constraint
                WHERE contype = 'f' AND confrelid = 'segments_segment'::regclass
                  AND conrelid IN ('segments_membership'::regclass,
                                   'segments_membershipchange'::regclass)"""
        )
        found = cursor.fetchone()[0]
    assert found in (0, 2), found
    return found == 2


@pytest.fixture
def back_to_latest() -> Iterator[None]:
    yield
    _migrate()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("steps", "present"),
    [(INDEXES, _has_index), (CONSTRAINTS, _has_segment_constraints)],
    ids=["segment indexes (0005)", "segment constraints (0007)"],
)
def test_dropping_never_blocks_reads_of_memberships(
    back_to_latest: None, steps: tuple[tuple[str, str], ...], present: Callable[[], bool]
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL locks")
    before, drop = steps
    # given the indexes (constraints) back, and a long transaction that has read
    # memberships
    _migrate(before)
    assert present()
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
            _migrate(drop)
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
    assert not present()
