"""Exports of a 1,000,000-member audience to each vendor file, against a
baseline measured in the same run.

    .venv/bin/python bench/exports.py [--members 1000000] [--database cdp_bench_exports]

The database (its own, created and migrated if missing) holds ``--members``
profiles made in SQL: a user id, an email and a phone identifier each, traits
with names and an address; 95 % granted the "ads" purpose (consent records and
states, as the consent app writes them), 5 % did not; one segment whose current
members are all of them (memberships and their outbox rows). Kept between runs
(``--fresh`` makes it again).

For each kind (Adobe Target, Optimizely, Dynamic Yield, Google Customer Match,
Meta custom audiences) a full run of a destination on that segment is timed, as
the app runs it (``export_run_execute``: consent in the query, streamed with a
server-side cursor, normalized, hashed where the kind hashes, split, written).
The baseline is PostgreSQL alone writing the same members' ids to a file:
``COPY (SELECT profile_id FROM segments_membership WHERE ...) TO STDOUT``.
Target: each export within 30 s. Prints each time and its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_SECONDS = 30.0
SEGMENT_KEY = "bench-audience"
CHUNK = 100_000


def dsn_of(database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{database}"


def say(message: str) -> None:
    print(message, flush=True)


def _uuid_sql(expr: str) -> str:
    return f"('00000000-0000-4000-8000-' || lpad(to_hex({expr}), 12, '0'))::uuid"


def ensure_database(database: str, *, fresh: bool) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
            say(f"[setup] created database {database}")
    env = {**os.environ, "DATABASE_URL": dsn_of(database), "DEBUG": "false"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise SystemExit(f"manage.py migrate failed:\n{proc.stdout}\n{proc.stderr}")


PROFILES_SQL = f"""
INSERT INTO identity_profile (id, created_at, updated_at, traits, trait_timestamps,
    first_seen, last_seen, merged_into_id)
SELECT {_uuid_sql("i")}, now(), now(),
  jsonb_build_object(
    'email', 'u' || i || '@example.com', 'firstName', 'Person', 'lastName', 'No-' || i,
    'address', jsonb_build_object('country', (ARRAY['US','DE','FR','GB'])[1 + mod(i, 4)],
      'postalCode', lpad((10000 + mod(i, 89999))::text, 5, '0'),
      'city', (ARRAY['New York','Berlin','Paris','London'])[1 + mod(i, 4)],
      'state', (ARRAY['NY','BE','IDF','LND'])[1 + mod(i, 4)])),
  '{{}}'::jsonb, now(), now(), NULL
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
"""
IDENTIFIERS_SQL = f"""
INSERT INTO identity_identifier (type, value, raw_value, created_at, profile_id)
SELECT t.type, t.value, t.value, now(), {_uuid_sql("i")}
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i,
LATERAL (VALUES ('user_id', 'u' || i), ('email', 'u' || i || '@example.com'),
                ('phone', '+1650' || (2000000 + i)::text)) AS t(type, value)
"""
RECORDS_SQL = f"""
INSERT INTO consent_consentrecord (profile_id, origin_profile_id, purpose_id, status,
    given_at, recorded_at, source, method, notice_version, notice_hash, ip_hash,
    user_agent, page_url, tcf_string, gcm_flags, event_message_id, entered_by_id)
SELECT {_uuid_sql("i")}, {_uuid_sql("i")}, %(purpose)s, 'granted', now(), now(), 'api', '',
  '', '', '', '', '', '', '{{}}'::jsonb, '', NULL
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
WHERE mod(i, 20) <> 0
"""
STATES_SQL = """
INSERT INTO consent_consentstate (profile_id, purpose_id, status, given_at, expires_at, record_id)
SELECT profile_id, purpose_id, status, given_at, NULL, id FROM consent_consentrecord
WHERE purpose_id = %(purpose)s
"""
MEMBERS_SQL = f"""
INSERT INTO segments_membership (segment_id, profile_id, entered_at, exited_at, reason,
    exit_reason, source, version, changed_at)
SELECT %(segment)s, {_uuid_sql("i")}, now(), NULL, '{{}}'::jsonb, '{{}}'::jsonb, 'cluster', 1, now()
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
"""
CHANGES_SQL = f"""
INSERT INTO segments_membershipchange (segment_id, profile_id, kind, at, source, version)
SELECT %(segment)s, {_uuid_sql("i")}, 'entered', now(), 'cluster', 1
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
"""


def generate(database: str, members: int) -> tuple[int, int]:
    """The purpose's and the segment's ids (made if the data is not there yet)."""
    from apps.consent.models import Purpose
    from apps.segments.models import Segment
    from apps.segments.written import written_segment_create

    purpose, _ = Purpose.objects.get_or_create(key="ads", defaults={"name": "Advertising"})
    segment = Segment.objects.filter(key=SEGMENT_KEY).first()
    if segment is not None and segment.size == members:
        return purpose.pk, segment.pk
    if segment is not None:
        raise SystemExit(f"{database} holds another size of data: run with --fresh")
    segment = written_segment_create(key=SEGMENT_KEY, name="Bench audience")
    started = time.perf_counter()
    with psycopg.connect(dsn_of(database), autocommit=True) as conn:
        for lo in range(1, members + 1, CHUNK):
            hi = min(lo + CHUNK - 1, members)
            args = {"lo": lo, "hi": hi, "purpose": purpose.pk, "segment": segment.pk}
            for sql in (PROFILES_SQL, IDENTIFIERS_SQL, RECORDS_SQL, MEMBERS_SQL, CHANGES_SQL):
                conn.execute(sql, args)
            say(f"[setup] {hi:,} of {members:,} profiles ({time.perf_counter() - started:.0f} s)")
        conn.execute(STATES_SQL, {"purpose": purpose.pk})
        conn.execute(
            "UPDATE segments_segment SET size = %s, version = 1 WHERE id = %s",
            [members, segment.pk],
        )
        conn.execute("VACUUM ANALYZE")
    say(f"[setup] data made in {time.perf_counter() - started:.0f} s")
    return purpose.pk, segment.pk


def baseline(database: str, segment_id: int, directory: Path) -> float:
    sql = (
        "COPY (SELECT profile_id FROM segments_membership "
        f"WHERE segment_id = {int(segment_id)} AND exited_at IS NULL) TO STDOUT"
    )
    with psycopg.connect(dsn_of(database)) as conn, conn.cursor() as cursor:
        started = time.perf_counter()
        with open(directory / "baseline.txt", "wb") as out, cursor.copy(sql) as copy:
            for data in copy:
                out.write(data)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--database", default="cdp_bench_exports")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--kinds", default="", help="comma-separated kinds (default: all)")
    args = parser.parse_args()

    ensure_database(args.database, fresh=args.fresh)
    os.environ["DATABASE_URL"] = dsn_of(args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings.local")
    os.environ["DEBUG"] = "false"
    directory = Path(tempfile.mkdtemp(prefix="bench-exports-"))
    os.environ["CDP_EXPORTS_DIR"] = str(directory)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    settings.CDP["EXPORTS_DIR"] = str(directory)
    from apps.exports.models import Destination
    from apps.exports.services import destination_save, export_run_execute, export_run_start
    from apps.segments.models import Segment

    _, segment_id = generate(args.database, args.members)
    segment = Segment.objects.get(pk=segment_id)
    base = baseline(args.database, segment_id, directory)
    say(f"\naudience: {args.members:,} members, 95 % consented; files in {directory}")
    say(f"baseline (COPY of the member ids to a file): {base:.2f} s\n")
    kinds = [
        ("adobe_target", {}),
        ("optimizely", {}),
        ("dynamic_yield", {"identifier_type": "email", "hashing": "sha256"}),
        ("google_customer_match", {}),
        ("meta_custom_audience", {}),
    ]
    if args.kinds:
        wanted = set(args.kinds.split(","))
        kinds = [(k, f) for k, f in kinds if k in wanted]
    say(f"{'kind':<24}{'seconds':>9}{'x baseline':>12}{'rows':>11}{'files':>7}  target")
    misses = []
    for kind, fields in kinds:
        key = f"bench-{kind.replace('_', '-')}"
        from apps.consent.models import Purpose

        destination = Destination.objects.filter(key=key).first() or Destination(
            key=key, name=key, kind=kind, purpose=Purpose.objects.get(key="ads"), **fields
        )
        destination_save(destination=destination, segments=[segment])
        run = export_run_start(destination=destination)
        started = time.perf_counter()
        run = export_run_execute(run.pk)
        spent = time.perf_counter() - started
        if run.status != "succeeded":
            raise SystemExit(f"{kind}: {run.error}")
        ok = spent <= TARGET_SECONDS
        if not ok:
            misses.append(kind)
        say(
            f"{kind:<24}{spent:>9.2f}{spent / base:>12.1f}{run.rows:>11,}{run.files:>7}"
            f"  {'ok' if ok else 'MISSED'} (<= {TARGET_SECONDS:.0f} s)"
        )
        for row in run.export_files.all():
            (directory / row.path).unlink(missing_ok=True)
    say("\nall within target" if not misses else f"\nmissed: {', '.join(misses)}")


if __name__ == "__main__":
    main()
