#!/usr/bin/env python
"""Rule segments benchmark: batch refresh, real-time evaluation, and event-to-visible
latency, on a million profiles and ten million events (issue 11, "Must show").

What it does (see bench/README.md):

1. **Data.** In its own PostgreSQL database (``cdp_bench_segments``, migrated with
   ``manage.py migrate``) it generates, in SQL, ``--profiles`` profiles (traits with
   ``address.country``), one ``user_id`` identifier each, ``--events`` events of an
   e-commerce mix over ``--days`` days with ``--recent-share`` of them in the last
   hour, and their ``ProfileFeatures`` rows (one ``INSERT ... SELECT ... GROUP BY``
   over the events). The secondary indexes and foreign keys are dropped for the
   load and rebuilt after it, then ``VACUUM ANALYZE``. A later run reuses the data
   (``--regenerate`` makes it again); it only moves the last hour's slice of
   events up to the present, and removes what earlier runs added.
2. **Batch refresh** of a three-condition tree (a feature threshold, a windowed
   ``performed`` with a property filter, a trait) through
   ``memberships.segment_save`` and ``memberships.segment_refresh`` (first and
   steady-state refresh), against a baseline measured in the same run: counting
   the live profiles joined with their features.
3. **Real-time evaluation.** The pipeline stages ``segments.features`` and
   ``segments.realtime`` on batches of newly inserted events of existing
   profiles, with 20 enabled segments and with none (the baseline), alternating
   batch by batch so that the machine's noise falls on both alike.
4. **Event to visible.** A real gunicorn and a real Celery worker (Redis db 12):
   the third ``Product Viewed`` of shoes within an hour is posted to
   ``/v1/track``, and ``GET /api/v1/profiles/<external_id>/segments`` is polled
   until the segment is there (``--poll db`` polls ``segments_membership``
   instead). p50 and p95 over ``--trials`` trials.

Run it with the project's virtualenv:  .venv/bin/python bench/segments.py
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_DB = 12
# The db the latency phase flushes and its worker consumes (--redis-db). Nothing
# else may consume it meanwhile: a test worker on the same db takes the bench's
# tasks and processes them against its own database (the events are then never
# processed here).
_REDIS: list[int] = [REDIS_DB]
WRITE_KEY = "bench_segments_write_key_0123456789"
SOURCE_NAME = "bench-segments"
# Generated events' message ids; whatever a run adds has another prefix, and goes
# at the start of the next run.
GEN_PREFIX = "gen-"

# The tree of the "Must show", as the brief gives it.
REFRESH_TREE: dict[str, Any] = {
    "type": "and",
    "children": [
        {"type": "feature", "name": "orders_count", "op": "gte", "value": 2},
        {
            "type": "performed",
            "event": "Product Viewed",
            "where": [{"path": "properties.category", "op": "equals", "value": "shoes"}],
            "times": 1,
            "times_op": ">=",
            "within_seconds": 3600,
        },
        {"type": "trait", "path": "address.country", "op": "in", "value": ["DE", "AT"]},
    ],
}

# The segment the latency phase makes a profile enter: its third view of shoes
# within an hour.
BROWSING_SHOES: dict[str, Any] = {
    "type": "performed",
    "event": "Product Viewed",
    "where": [{"path": "properties.category", "op": "equals", "value": "shoes"}],
    "times": 3,
    "times_op": ">=",
    "within_seconds": 3600,
}


def _performed(event: str, seconds: int, times: int = 1, **where: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "type": "performed",
        "event": event,
        "times": times,
        "times_op": ">=",
        "within_seconds": seconds,
    }
    if where:
        node["where"] = [
            {"path": path.replace("__", "."), "op": "equals", "value": value}
            for path, value in where.items()
        ]
    return node


def _feature(name: str, op: str, value: Any) -> dict[str, Any]:
    return {"type": "feature", "name": name, "op": op, "value": value}


def _trait(path: str, op: str, value: Any) -> dict[str, Any]:
    return {"type": "trait", "path": path, "op": op, "value": value}


# Twenty active segments of the kinds marketers make: windows of an hour to a
# week, features, traits, and mixes of them.
TWENTY: list[tuple[str, dict[str, Any]]] = [
    ("browsing-shoes", BROWSING_SHOES),
    ("shoes-buyers-dach", REFRESH_TREE),
    ("browsing-electronics",
     _performed("Product Viewed", 3600, 3, properties__category="electronics")),
    ("cart-last-hour", _performed("Product Added", 3600)),
    ("ordered-today", _performed("Order Completed", 86400)),
    ("active-this-week", _performed("Product Viewed", 7 * 86400, 5)),
    ("email-clickers-week", _performed("Email Link Clicked", 7 * 86400)),
    ("repeat-buyers", _feature("orders_count", "gte", 3)),
    ("big-spenders", _feature("revenue_total", "gte", 500)),
    ("window-shoppers", {"type": "and", "children": [
        _feature("product_views", "gte", 10), _feature("orders_count", "equals", 0)]}),
    ("mobile-users", _feature("last_device", "equals", "mobile")),
    ("engaged-readers", _feature("email_opens", "gte", 2)),
    ("germany", _trait("address.country", "equals", "DE")),
    ("pro-plan", _trait("plan", "in", ["pro", "enterprise"])),
    ("us-cart-abandoners", {"type": "and", "children": [
        _trait("address.country", "equals", "US"), _feature("cart_abandoned", "equals", True)]}),
    ("fr-browsing-books", {"type": "and", "children": [
        _trait("address.country", "equals", "FR"),
        _performed("Product Viewed", 3600, 1, properties__category="books")]}),
    ("lapsed-buyers", {"type": "and", "children": [
        _feature("orders_count", "gte", 1), _feature("days_since_last_order", "gt", 30)]}),
    ("checkout-no-order", {"type": "and", "children": [
        _performed("Checkout Started", 86400),
        {"type": "not", "child": _performed("Order Completed", 86400)}]}),
    ("many-sessions", _feature("sessions_count", "gte", 8)),
    ("gb-or-ie-viewers", {"type": "or", "children": [
        _trait("address.country", "in", ["GB", "IE"]),
        _performed("Product Viewed", 6 * 3600, 2, properties__category="outdoor")]}),
]  # fmt: skip

# Profile n's country, device and locale come from n, so that its traits and its
# events agree: DE 10%, AT 5%.
COUNTRIES = [
    ("US", "en-US"), ("US", "en-US"), ("US", "en-US"), ("US", "en-US"),
    ("DE", "de-DE"), ("DE", "de-DE"), ("GB", "en-GB"), ("GB", "en-GB"),
    ("FR", "fr-FR"), ("AT", "de-AT"), ("NL", "nl-NL"), ("ES", "es-ES"),
    ("IT", "it-IT"), ("PL", "pl-PL"), ("SE", "sv-SE"), ("CH", "de-CH"),
    ("BR", "pt-BR"), ("CA", "en-CA"), ("IE", "en-IE"), ("JP", "ja-JP"),
]  # fmt: skip
CATEGORIES = [
    "shoes", "electronics", "books", "outdoor", "kitchen",
    "toys", "beauty", "garden", "sports", "fashion",
]  # fmt: skip
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
]
DEVICES = ["desktop", "mobile", "desktop"]  # what features.device_of makes of them
PLANS = ["free", "free", "free", "pro", "pro", "enterprise", "trial"]


def profile_uuid(n: int) -> uuid.UUID:
    """Profile n's id; the SQL below spells the same (``_uuid_sql``)."""
    return uuid.UUID(f"00000000-0000-4000-8000-{n:012x}")


def _uuid_sql(expr: str) -> str:
    return f"('00000000-0000-4000-8000-' || lpad(to_hex({expr}), 12, '0'))::uuid"


def _array_sql(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


def profile_external_id(n: int) -> str:
    return f"user_id:u{n}"


def dsn_of(database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{database}"


# --------------------------------------------------------------------------- output


def say(message: str) -> None:
    print(message, flush=True)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


CLK_TCK = os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> float:
    values = [int(v) for v in _read("/proc/stat").splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def wait_for_quiet(max_wait: float, threshold: float = 0.3) -> str:
    """Before a timed phase: wait (bounded) for the machine to be idle apart from us;
    other engineers' test runs share its two cores."""
    deadline = time.monotonic() + max_wait
    waited = 0.0
    while True:
        b0, t0 = busy_cpu_seconds(), time.monotonic()
        time.sleep(1.0)
        load = (busy_cpu_seconds() - b0) / (time.monotonic() - t0)
        if load < threshold:
            return f"machine idle ({load:.2f} cores busy" + (
                f", after waiting {waited:.0f} s)" if waited else ")"
            )
        if time.monotonic() >= deadline:
            return f"! machine busy ({load:.2f} cores) after {waited:.0f} s; going ahead"
        waited += 1.0


class CpuWatch:
    """Cores the whole machine used during a phase (ours and everyone else's)."""

    def __init__(self) -> None:
        self.b0, self.t0 = busy_cpu_seconds(), time.monotonic()

    def cores(self) -> float:
        return (busy_cpu_seconds() - self.b0) / max(1e-9, time.monotonic() - self.t0)


# --------------------------------------------------------------------------- database


def ensure_database(database: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
            say(f"[setup] created database {database}")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cdp.settings.local",
        "DEBUG": "false",
        "DATABASE_URL": dsn_of(database),
    }
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"manage.py migrate failed:\n{proc.stdout}\n{proc.stderr}")
    applied = [line for line in proc.stdout.splitlines() if line.strip().startswith("Applying")]
    say(f"[setup] migrate: {len(applied)} migrations applied in {time.perf_counter() - t:.1f} s")


def drop_database(database: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


META_DDL = "CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb NOT NULL)"


def meta_get(conn: psycopg.Connection, key: str) -> Any:
    conn.execute(META_DDL)
    row = conn.execute("SELECT value FROM bench_meta WHERE key = %s", [key]).fetchone()
    return row[0] if row else None


def meta_set(conn: psycopg.Connection, key: str, value: Any) -> None:
    conn.execute(META_DDL)
    conn.execute(
        "INSERT INTO bench_meta (key, value) VALUES (%s, %s::jsonb) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        [key, json.dumps(value)],
    )


def meta_delete(conn: psycopg.Connection, key: str) -> None:
    conn.execute("DELETE FROM bench_meta WHERE key = %s", [key])


# The tables the load fills; their secondary indexes and foreign keys are dropped
# for it and made again after it (in the order given here).
LOADED_TABLES = (
    "events_event",
    "segments_profilefeatures",
    "identity_profile",
    "identity_identifier",
)


def schema_capture(conn: psycopg.Connection) -> list[dict[str, str]]:
    """The secondary indexes and the unique and foreign-key constraints of the
    loaded tables, as the migrations made them."""
    out: list[dict[str, str]] = []
    for table in LOADED_TABLES:
        for name, definition in conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') "
            "ORDER BY contype DESC, conname",
            [table],
        ):
            out.append({"table": table, "kind": "constraint", "name": name, "sql": definition})
        for name, definition in conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) ORDER BY c.relname",
            [table],
        ):
            out.append({"table": table, "kind": "index", "name": name, "sql": definition})
    return out


def schema_drop(conn: psycopg.Connection, items: list[dict[str, str]]) -> None:
    for item in items:
        if item["kind"] == "constraint":
            conn.execute(f'ALTER TABLE {item["table"]} DROP CONSTRAINT IF EXISTS "{item["name"]}"')
    for item in items:
        if item["kind"] == "index":
            conn.execute(f'DROP INDEX IF EXISTS "{item["name"]}"')


def schema_restore(conn: psycopg.Connection, items: list[dict[str, str]]) -> None:
    # Unique constraints and plain indexes first, foreign keys (which validate by
    # reading both tables) last.
    order = sorted(
        items,
        key=lambda i: (i["kind"] == "constraint" and i["sql"].startswith("FOREIGN KEY"),),
    )
    for item in order:
        t = time.perf_counter()
        if item["kind"] == "index":
            conn.execute(item["sql"])
        else:
            conn.execute(
                f'ALTER TABLE {item["table"]} ADD CONSTRAINT "{item["name"]}" {item["sql"]}'
            )
        say(f"  {item['kind']} {item['name']}: {time.perf_counter() - t:.1f} s")


def _events_chunk_sql(source_id: int, n_profiles: int) -> str:
    """Events n in [%(lo)s, %(hi)s]: the time of event n grows with n (old part over
    the days up to an hour ago, the recent share in the last hour), so the table is
    in time order as a real one is; the profile is drawn with a long tail (a few
    people make many events, most make a few)."""
    locales = _array_sql([loc for _, loc in COUNTRIES])
    agents = _array_sql(USER_AGENTS)
    categories = _array_sql(CATEGORIES)
    pages = _array_sql(["Home", "Category", "Product", "Cart", "Search"])
    return f"""
    INSERT INTO events_event (
        source_id, message_id, type, event, name, user_id, anonymous_id, previous_id,
        group_id, timestamp, original_timestamp, sent_at, received_at,
        timestamp_corrected, properties, traits, context, extra, processed_at, profile_id)
    SELECT {source_id}, '{GEN_PREFIX}' || n,
        CASE WHEN k = 'page' THEN 'page' ELSE 'track' END,
        CASE WHEN k = 'page' THEN '' ELSE k END,
        CASE WHEN k = 'page' THEN ({pages})[1 + mod(pid, 5)] ELSE '' END,
        'u' || p, 'a-' || p, '', '',
        ts, ts, ts + interval '1 second', ts + interval '1.2 seconds', false,
        CASE k
          WHEN 'Product Viewed' THEN jsonb_build_object(
            'product_id', 'P-' || lpad(pid::text, 6, '0'), 'category', cat,
            'name', 'Product ' || pid, 'price', price, 'currency', 'EUR')
          WHEN 'Product Added' THEN jsonb_build_object(
            'product_id', 'P-' || lpad(pid::text, 6, '0'), 'category', cat,
            'price', price, 'quantity', 1, 'currency', 'EUR')
          WHEN 'Checkout Started' THEN jsonb_build_object(
            'order_id', 'O-' || n, 'value', price, 'currency', 'EUR')
          WHEN 'Order Completed' THEN jsonb_build_object(
            'order_id', 'O-' || n, 'revenue', round((10 + r2 * 290)::numeric, 2),
            'currency', 'EUR', 'products', 1 + mod(pid, 4))
          WHEN 'page' THEN jsonb_build_object(
            'path', '/p/' || pid, 'url', 'https://shop.example.com/p/' || pid,
            'title', 'Product ' || pid)
          ELSE jsonb_build_object('campaign_id', 'C-' || mod(pid, 50))
        END,
        '{{}}'::jsonb,
        jsonb_build_object(
          'library', jsonb_build_object('name', 'analytics.js', 'version', '4.1.0'),
          'userAgent', ({agents})[1 + mod(p, 3)],
          'locale', ({locales})[1 + mod(p, 20)],
          'ip', '127.0.0.1'),
        '{{}}'::jsonb,
        ts + interval '2 seconds',
        {_uuid_sql("p")}
    FROM (
      SELECT n, p, ts, r2, (r3 * 100000)::int AS pid,
        round((5 + r3 * 295)::numeric, 2) AS price,
        ({categories})[1 + floor(r2 * 10)::int] AS cat,
        CASE WHEN u < 0.45 THEN 'Product Viewed' WHEN u < 0.80 THEN 'page'
             WHEN u < 0.90 THEN 'Product Added' WHEN u < 0.93 THEN 'Checkout Started'
             WHEN u < 0.965 THEN 'Order Completed' WHEN u < 0.985 THEN 'Email Opened'
             ELSE 'Email Link Clicked' END AS k
      FROM (
        SELECT n, random() AS u, random() AS r2, random() AS r3,
          1 + floor({n_profiles} * power(random(), 1.3))::int AS p,
          CASE WHEN n <= %(old)s
               THEN %(start)s::timestamptz + (n - 1) * %(old_step)s::interval
               ELSE %(recent_start)s::timestamptz + (n - %(old)s - 1) * %(recent_step)s::interval
          END AS ts
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS n
      ) a
    ) b
    """


FEATURES_SQL = """
INSERT INTO segments_profilefeatures (
    profile_id, orders_count, revenue_total, first_order_at, last_order_at,
    first_seen_at, last_seen_at, active_days, sessions_count, session_seconds_total,
    page_views, product_views, cart_adds, last_cart_at, email_opens, email_clicks,
    last_device, last_country, category_counts, rfm_recency, rfm_frequency,
    rfm_monetary, rfm_group, last_event_id, session_started_at, session_id, updated_at)
SELECT a.profile_id, a.orders, a.revenue, a.first_order, a.last_order,
    a.first_seen, a.last_seen, a.days, a.sessions, a.session_seconds,
    a.pages, a.views, a.adds, a.last_cart, a.opens, a.clicks,
    CASE WHEN a.agent LIKE '%iPhone%' THEN 'mobile' ELSE 'desktop' END,
    upper(split_part(a.locale, '-', 2)),
    coalesce(c.counts, '{}'::jsonb), NULL, NULL, NULL, '', a.last_id,
    a.session_started, '', now()
FROM (
  SELECT profile_id,
    count(*) FILTER (WHERE event = 'Order Completed') AS orders,
    coalesce(sum(revenue) FILTER (WHERE event = 'Order Completed'), 0) AS revenue,
    min(ts) FILTER (WHERE event = 'Order Completed') AS first_order,
    max(ts) FILTER (WHERE event = 'Order Completed') AS last_order,
    min(ts) AS first_seen, max(ts) AS last_seen,
    count(DISTINCT day) AS days,
    count(*) FILTER (WHERE new_session) AS sessions,
    coalesce(sum(gap) FILTER (WHERE NOT new_session), 0) AS session_seconds,
    max(ts) FILTER (WHERE new_session) AS session_started,
    count(*) FILTER (WHERE type = 'page') AS pages,
    count(*) FILTER (WHERE event = 'Product Viewed') AS views,
    count(*) FILTER (WHERE event = 'Product Added') AS adds,
    max(ts) FILTER (WHERE event IN ('Product Added', 'Checkout Started')) AS last_cart,
    count(*) FILTER (WHERE event = 'Email Opened') AS opens,
    count(*) FILTER (WHERE event = 'Email Link Clicked') AS clicks,
    max(id) AS last_id, max(agent) AS agent, max(locale) AS locale
  FROM (
    SELECT profile_id, id, timestamp AS ts, type, event,
      CASE WHEN event = 'Order Completed' THEN (properties ->> 'revenue')::numeric END
        AS revenue,
      (timestamp AT TIME ZONE 'UTC')::date AS day,
      floor(extract(epoch FROM timestamp - lag(timestamp) OVER w))::bigint AS gap,
      (lag(timestamp) OVER w IS NULL
        OR timestamp - lag(timestamp) OVER w > interval '30 minutes') AS new_session,
      context ->> 'userAgent' AS agent, context ->> 'locale' AS locale
    FROM events_event
    WINDOW w AS (PARTITION BY profile_id ORDER BY timestamp, id)
  ) e
  GROUP BY profile_id
) a
LEFT JOIN (
  SELECT profile_id, jsonb_object_agg(category, n) AS counts
  FROM (
    SELECT profile_id, properties ->> 'category' AS category, count(*) AS n
    FROM events_event WHERE event = 'Product Viewed'
    GROUP BY 1, 2
  ) x
  GROUP BY profile_id
) c USING (profile_id)
"""


def _profiles_sql() -> str:
    countries = _array_sql([c for c, _ in COUNTRIES])
    plans = _array_sql(PLANS)
    cities = _array_sql(["North", "South", "East", "West", "Centre", "Harbour"])
    return f"""
    INSERT INTO identity_profile (id, created_at, updated_at, traits, trait_timestamps,
        first_seen, last_seen, merged_into_id)
    SELECT {_uuid_sql("i")}, coalesce(f.first_seen_at, %(start)s), now(),
      jsonb_build_object(
        'email', 'u' || i || '@example.com', 'first_name', 'Person', 'last_name', 'No' || i,
        'plan', ({plans})[1 + mod(i, 7)],
        'address', jsonb_build_object(
          'country', ({countries})[1 + mod(i, 20)],
          'city', ({cities})[1 + mod(i, 6)] || ' ' || ({countries})[1 + mod(i, 20)])),
      '{{}}'::jsonb, f.first_seen_at, f.last_seen_at, NULL
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
    LEFT JOIN segments_profilefeatures f ON f.profile_id = {_uuid_sql("i")}
    """


IDENTIFIERS_SQL = f"""
INSERT INTO identity_identifier (type, value, raw_value, created_at, profile_id)
SELECT 'user_id', 'u' || i, 'u' || i, now(), {_uuid_sql("i")}
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
"""


def _chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for lo in range(1, total + 1, size):
        yield lo, min(lo + size - 1, total)


def _progress(what: str, done: int, total: int, started: float) -> None:
    spent = time.perf_counter() - started
    eta = spent / done * (total - done) if done else 0
    say(f"  {what} {done:,} / {total:,} ({done / total:.0%}), {spent:.0f} s, ETA {eta:.0f} s")


def source_ensure(conn: psycopg.Connection) -> int:
    row = conn.execute(
        # Only the key's SHA-256 and prefix are stored (apps/events/models.py).
        "INSERT INTO events_source (name, write_key_hash, write_key_prefix, enabled, "
        "created_at, updated_at) VALUES (%s, %s, %s, true, now(), now()) "
        "ON CONFLICT (name) DO UPDATE SET enabled = true RETURNING id",
        [SOURCE_NAME, hashlib.sha256(WRITE_KEY.encode()).hexdigest(), WRITE_KEY[:6]],
    ).fetchone()
    assert row is not None
    return int(row[0])


def generate(conn: psycopg.Connection, args: argparse.Namespace) -> dict[str, Any]:
    """Fill the database, in SQL, one statement at a time on this one connection
    (other engineers' tests share the machine's two cores)."""
    # One core: no parallel workers for the scans, sorts and index builds.
    conn.execute("SET max_parallel_workers_per_gather = 0")
    conn.execute("SET max_parallel_maintenance_workers = 0")
    conn.execute("SET work_mem = '256MB'")
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("SET synchronous_commit = off")
    started = time.perf_counter()
    saved = meta_get(conn, "dropped_schema")
    if saved is None:
        saved = schema_capture(conn)
        meta_set(conn, "dropped_schema", saved)
    meta_delete(conn, "generated")
    say(f"[generate] {len(saved)} indexes and constraints to drop for the load and rebuild")
    conn.execute(
        "TRUNCATE events_event, segments_profilefeatures, identity_identifier, "
        "identity_profile, segments_segment, events_pipelinebatch RESTART IDENTITY CASCADE"
    )
    schema_drop(conn, saved)
    source_id = source_ensure(conn)

    n_events, n_profiles = args.events, args.profiles
    recent = int(n_events * args.recent_share)
    old = n_events - recent
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=args.days)
    recent_start = now - timedelta(hours=1)
    params = {
        "old": old,
        "start": start,
        "old_step": (recent_start - start - timedelta(minutes=1)) / max(1, old),
        "recent_start": recent_start,
        "recent_step": timedelta(hours=1) / max(1, recent),
    }
    sql = _events_chunk_sql(source_id, n_profiles)
    t = time.perf_counter()
    for lo, hi in _chunks(n_events, 500_000):
        conn.execute(sql, {**params, "lo": lo, "hi": hi})
        _progress("events", hi, n_events, t)

    t = time.perf_counter()
    say("  features: one INSERT ... SELECT ... GROUP BY over the events (a few minutes)")
    conn.execute(FEATURES_SQL)
    features = conn.execute("SELECT count(*) FROM segments_profilefeatures").fetchone()
    say(f"  features: {features[0] if features else 0:,} rows in {time.perf_counter() - t:.0f} s")

    t = time.perf_counter()
    psql = _profiles_sql()
    for lo, hi in _chunks(n_profiles, 250_000):
        conn.execute(psql, {"start": start, "lo": lo, "hi": hi})
        _progress("profiles", hi, n_profiles, t)
    t = time.perf_counter()
    for lo, hi in _chunks(n_profiles, 500_000):
        conn.execute(IDENTIFIERS_SQL, {"lo": lo, "hi": hi})
        _progress("identifiers", hi, n_profiles, t)

    say("[generate] rebuilding indexes and constraints")
    schema_restore(conn, saved)
    meta_delete(conn, "dropped_schema")
    t = time.perf_counter()
    for table in LOADED_TABLES:
        # VACUUM too, not only ANALYZE: it sets the visibility map, as a table that
        # has lived for a while has it, so that index-only scans are possible.
        conn.execute(f"VACUUM (ANALYZE) {table}")
    say(f"  VACUUM ANALYZE: {time.perf_counter() - t:.0f} s")
    last = conn.execute("SELECT max(id) FROM events_event").fetchone()
    info = {
        "profiles": n_profiles,
        "events": n_events,
        "recent": recent,
        "days": args.days,
        "recent_share": args.recent_share,
        "last_generated_id": int(last[0]) if last and last[0] else 0,
        "recent_first_id": old + 1,
        "generated_at": now.isoformat(),
        "seconds": round(time.perf_counter() - started),
    }
    meta_set(conn, "generated", info)
    say(f"[generate] done in {info['seconds']} s")
    return info


def data_size(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
    return str(row[0]) if row else "?"


def freshen_recent(conn: psycopg.Connection, info: dict[str, Any]) -> None:
    """Move the last hour's slice of generated events (and what it made of the
    features) up to now: the windows of an hour need events of the last hour."""
    lo, hi = info["recent_first_id"], info["last_generated_id"]
    row = conn.execute(
        "SELECT min(timestamp), max(timestamp) FROM events_event WHERE id BETWEEN %s AND %s",
        [lo, hi],
    ).fetchone()
    if not row or row[1] is None:
        return
    slice_start, slice_end = row
    delta = datetime.now(UTC).replace(microsecond=0) - slice_end - timedelta(seconds=5)
    if delta < timedelta(minutes=2):
        return
    t = time.perf_counter()
    conn.execute("SET synchronous_commit = off")
    with conn.transaction():
        conn.execute(
            "UPDATE events_event SET timestamp = timestamp + %(d)s, "
            "original_timestamp = original_timestamp + %(d)s, sent_at = sent_at + %(d)s, "
            "received_at = received_at + %(d)s, processed_at = processed_at + %(d)s "
            "WHERE id BETWEEN %(lo)s AND %(hi)s",
            {"d": delta, "lo": lo, "hi": hi},
        )
        # The slice moves as a whole, so the times it set move with it.
        shift = ", ".join(
            f"{c} = CASE WHEN {c} >= %(s)s THEN {c} + %(d)s ELSE {c} END"
            for c in ("last_seen_at", "last_order_at", "first_order_at", "last_cart_at")
        )
        conn.execute(
            f"UPDATE segments_profilefeatures SET {shift}, session_started_at = CASE "
            "WHEN session_started_at >= %(s)s THEN session_started_at + %(d)s "
            "ELSE session_started_at END WHERE last_seen_at >= %(s)s",
            {"d": delta, "s": slice_start},
        )
        conn.execute(
            "UPDATE identity_profile SET last_seen = last_seen + %(d)s WHERE last_seen >= %(s)s",
            {"d": delta, "s": slice_start},
        )
    conn.execute("VACUUM (ANALYZE) events_event")
    conn.execute("VACUUM (ANALYZE) segments_profilefeatures")
    say(
        f"[setup] moved the last hour's {hi - lo + 1:,} events forward by {delta} "
        f"({time.perf_counter() - t:.0f} s)"
    )


# --------------------------------------------------------------------------- django


def django_env(database: str, broker: str = "") -> dict[str, str]:
    """Production settings for the bench process, the server and the worker."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("DJANGO_", "CDP_", "CELERY_")) or key in ("DATABASE_URL", "CACHE_URL"):
            del env[key]
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "cdp.settings.production",
            "DATABASE_URL": dsn_of(database),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "CDP_PRIVACY_HASH_KEY": "bench-segments-" + "k" * 20 + secrets.token_urlsafe(30),
            "CDP_SECRETS_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "SECURE_HSTS_SECONDS": "0",
            "STATIC_ROOT": str(Path(tempfile.gettempdir()) / "cdp-bench-static"),
            "DEBUG": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if broker:
        env["CELERY_BROKER_URL"] = broker
    return env


def django_setup(database: str) -> None:
    # In this process: eager Celery (no broker), so nothing is published.
    os.environ.update(django_env(database))
    os.environ.pop("CELERY_BROKER_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def cleanup_previous_runs(info: dict[str, Any]) -> None:
    """Remove what earlier runs added: segments (with their memberships, history,
    outbox and rechecks), pipeline batches, and the events they posted, whose
    profiles' features are recomputed by the product's own fold."""
    from django.db import connection, transaction

    from apps.events.models import Event
    from apps.segments.services import features_recompute

    last = info["last_generated_id"]
    with transaction.atomic():
        touched = list(
            Event.objects.filter(id__gt=last, profile_id__isnull=False)
            .values_list("profile_id", flat=True)
            .distinct()
        )
        with connection.cursor() as cur:
            cur.execute("TRUNCATE segments_segment, events_pipelinebatch RESTART IDENTITY CASCADE")
            cur.execute("DELETE FROM events_event WHERE id > %s", [last])
        for i in range(0, len(touched), 1000):
            features_recompute(profile_ids=touched[i : i + 1000])
    if touched:
        say(f"[setup] removed the last run's events; recomputed {len(touched):,} profiles")


# --------------------------------------------------------------------------- phase 2


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def baseline_count() -> tuple[float, int]:
    """Live profiles joined with their features, counted: reading what a refresh
    must read at least, by the same (Django) connection."""
    from django.db import connection

    def run() -> int:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM identity_profile p "
                "JOIN segments_profilefeatures f ON f.profile_id = p.id "
                "WHERE p.merged_into_id IS NULL"
            )
            return int(cur.fetchone()[0])

    run()  # warm
    times = []
    count = 0
    for _ in range(3):
        seconds, count = timed(run)
        times.append(seconds)
    return statistics.median(times), count


def explain_refresh(condition: dict[str, Any]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the query the compiler makes of the tree."""
    from django.db import connection
    from django.utils import timezone

    from apps.segments import compiler
    from apps.segments.memberships import _conditions
    from apps.segments.rules import plan_build

    plan = plan_build(condition, _conditions())
    q, where, _ = compiler._compile(plan, timezone.now())
    sql = f"SELECT p.id {compiler._from(q)} WHERE p.merged_into_id IS NULL AND {where}"
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, q.params)
        return "\n".join(row[0] for row in cur.fetchall())


def phase_refresh(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from apps.segments import memberships

    say(f"\n[refresh] {wait_for_quiet(args.quiet_wait)}")
    base_s, live = baseline_count()
    results["baseline_count_s"] = base_s
    say(f"  baseline: count(*) of {live:,} live profiles joined with features: {base_s:.2f} s")
    cpu = CpuWatch()
    save_s, segment = timed(
        lambda: memberships.segment_save(
            key="bench-refresh", name="Bench refresh", condition=REFRESH_TREE, refresh=False
        )
    )
    first_s, first = timed(lambda: memberships.segment_refresh(segment))
    second_s, second = timed(lambda: memberships.segment_refresh(segment))
    results.update(
        refresh_first_s=first_s,
        refresh_second_s=second_s,
        refresh_size=second.size,
        refresh_cores=cpu.cores(),
        refresh_method=getattr(second, "method", "?"),
    )
    say(
        f"  segment_save (no refresh) {save_s:.2f} s; first refresh {first_s:.2f} s "
        f"({first.entered:,} entered, {first.size:,} members); steady state "
        f"{second_s:.2f} s ({second.entered:,} entered, {second.exited:,} exited, "
        f"{second.size:,} members), method {results['refresh_method']}; machine "
        f"{results['refresh_cores']:.2f} cores busy"
    )
    if args.explain or second_s > 10:
        with contextlib.suppress(Exception):
            results["explain"] = explain_refresh(REFRESH_TREE)
            say("  EXPLAIN (ANALYZE, BUFFERS) of the compiled query:")
            for line in results["explain"].splitlines():
                say("    " + line)


# --------------------------------------------------------------------------- phase 3


def _segments_save_twenty() -> list[Any]:
    from apps.segments import memberships

    saved = []
    t = time.perf_counter()
    for key, condition in TWENTY:
        saved.append(
            memberships.segment_save(
                key=key, name=key.replace("-", " ").capitalize(), condition=condition
            )
        )
    say(f"  saved and refreshed {len(saved)} segments in {time.perf_counter() - t:.0f} s")
    return saved


def _new_events(rng: random.Random, n: int, n_profiles: int, tag: str) -> list[Any]:
    """``n`` processed events of existing profiles, of the last minutes, in the
    generator's mix, with more views of shoes so that windows move."""
    from apps.events.models import Event

    now = datetime.now(UTC)
    out = []
    for i in range(n):
        p = rng.randrange(1, n_profiles + 1)
        u = rng.random()
        category = "shoes" if rng.random() < 0.3 else rng.choice(CATEGORIES)
        if u < 0.45:
            kind, props = "Product Viewed", {"product_id": "P-1", "category": category}
        elif u < 0.80:
            kind, props = "page", {"path": "/", "url": "https://shop.example.com/"}
        elif u < 0.90:
            kind, props = "Product Added", {"product_id": "P-1", "category": category}
        elif u < 0.95:
            kind, props = "Order Completed", {"order_id": f"O-{tag}-{i}", "revenue": 42.5}
        else:
            kind, props = "Checkout Started", {"order_id": f"O-{tag}-{i}"}
        ts = now - timedelta(milliseconds=rng.randrange(0, 60_000))
        out.append(
            Event(
                source_id=_SOURCE_ID[0],
                message_id=f"rt-{tag}-{i}-{rng.getrandbits(40):010x}",
                type="page" if kind == "page" else "track",
                event="" if kind == "page" else kind,
                name="Home" if kind == "page" else "",
                user_id=f"u{p}",
                anonymous_id=f"a-{p}",
                timestamp=ts,
                original_timestamp=ts,
                sent_at=ts,
                received_at=now,
                properties=props,
                context={
                    "userAgent": USER_AGENTS[p % 3],
                    "locale": COUNTRIES[p % 20][1],
                    "ip": HOST,
                },
                profile_id=profile_uuid(p),
                processed_at=now,
            )
        )
    out.sort(key=lambda e: e.timestamp)
    return out


_SOURCE_ID: list[int] = [0]


def phase_realtime(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from django.db import transaction

    from apps.events.models import Event, Source
    from apps.events.pipeline import stages
    from apps.segments.models import Segment

    _SOURCE_ID[0] = Source.objects.get(name=SOURCE_NAME).pk
    features_stage = stages["segments.features"]
    realtime_stage = stages["segments.realtime"]
    say("\n[realtime] 20 segments")
    Segment.objects.all().delete()
    _segments_save_twenty()
    say(f"  {wait_for_quiet(args.quiet_wait)}")
    rng = random.Random(11)
    per: dict[str, list[float]] = {"insert": [], "features": [], "rt0": [], "rt20": []}
    cpu = CpuWatch()
    batches = args.batches * 2 + 2  # two warm-up batches, then both variants alike
    for b in range(batches):
        variant = "rt20" if b % 2 else "rt0"
        Segment.objects.update(enabled=variant == "rt20")
        events = _new_events(rng, args.batch_size, args.profiles, f"{b}")
        t0 = time.perf_counter()
        with transaction.atomic():
            Event.objects.bulk_create(events)
        t1 = time.perf_counter()
        with transaction.atomic():
            features_stage(events)
        t2 = time.perf_counter()
        with transaction.atomic():
            realtime_stage(events)
        t3 = time.perf_counter()
        if b < 2:
            continue
        n = len(events)
        per["insert"].append((t1 - t0) / n)
        per["features"].append((t2 - t1) / n)
        per[variant].append((t3 - t2) / n)
    Segment.objects.update(enabled=True)
    ms = {k: statistics.median(v) * 1000 for k, v in per.items() if v}
    results.update(
        rt_insert_ms=ms["insert"],
        rt_features_ms=ms["features"],
        rt0_ms=ms["rt0"],
        rt20_ms=ms["rt20"],
        rt_added_ms=ms["rt20"] - ms["rt0"],
        rt_cores=cpu.cores(),
        rt_batches=args.batches,
    )
    say(
        f"  per event (median over {args.batches} batches of {args.batch_size} each): "
        f"insert {ms['insert']:.3f} ms, segments.features {ms['features']:.3f} ms, "
        f"segments.realtime with 0 segments {ms['rt0']:.3f} ms, with 20 "
        f"{ms['rt20']:.3f} ms; machine {results['rt_cores']:.2f} cores busy"
    )
    for key in ("features", "rt0", "rt20"):
        values = [v * 1000 for v in per[key]]
        say(f"    {key:8} p10 {pct(values, 10):.3f}  p90 {pct(values, 90):.3f} ms")


# --------------------------------------------------------------------------- phase 4


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def redis_flush() -> None:
    import redis

    r = redis.Redis(host=HOST, port=6379, db=_REDIS[0], socket_timeout=5)
    try:
        r.flushdb()
    finally:
        r.close()


class Services:
    """gunicorn (production config) and a Celery worker, stopped on exit."""

    def __init__(self, env: dict[str, str], workers: int, logdir: Path) -> None:
        self.port = free_port()
        self.logs = logdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self._start(
            "gunicorn",
            [
                str(VENV_BIN / "gunicorn"),
                "cdp.wsgi:application",
                "-c",
                str(ROOT / "cdp" / "gunicorn.py"),
                "--no-control-socket",
                "--bind",
                f"{HOST}:{self.port}",
                "--workers",
                str(workers),
                "--access-logfile",
                "/dev/null",
                "--log-level",
                "warning",
            ],
            env,
        )
        self._start(
            "celery",
            [
                *(str(VENV_BIN / "celery"), "-A", "cdp", "worker", "-l", "warning"),
                *("--concurrency", "2", "--without-gossip", "--without-mingle"),
            ],
            env,
        )

    def _start(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise SystemExit(f"{proc.args[0]} exited; see {self.logs}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            time.sleep(0.2)
        raise SystemExit("gunicorn did not answer /healthz")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


class Http:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
            try:
                self.conn.request(method, path, body, headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.conn.close()
                    self.conn = None
                return response.status, data
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def api_token(env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "create_api_token", f"bench-{os.getpid()}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise SystemExit(f"create_api_token failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1].split()[-1]


def _fresh_profiles(n_profiles: int, count: int, seed: int) -> list[int]:
    """Profiles with no event in the last two hours (so not browsing shoes yet)."""
    from apps.segments.models import ProfileFeatures

    rng = random.Random(seed)
    picked: list[int] = []
    cutoff = datetime.now(UTC) - timedelta(hours=2)
    while len(picked) < count:
        candidates = [rng.randrange(1, n_profiles + 1) for _ in range(count * 2)]
        recent = set(
            ProfileFeatures.objects.filter(
                profile_id__in=[profile_uuid(n) for n in candidates], last_seen_at__gte=cutoff
            ).values_list("profile_id", flat=True)
        )
        picked += [n for n in candidates if profile_uuid(n) not in recent and n not in picked]
    return picked[:count]


def _track_body(n: int, i: int, tag: str) -> bytes:
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    return json.dumps(
        {
            "event": "Product Viewed",
            "userId": f"u{n}",
            "anonymousId": f"a-{n}",
            "messageId": f"lat-{tag}-{n}-{i}",
            "timestamp": stamp,
            "sentAt": stamp,
            "properties": {"product_id": f"P-{i}", "category": "shoes", "price": 79.0},
            "context": {
                "library": {"name": "analytics.js", "version": "4.1.0"},
                "userAgent": USER_AGENTS[n % 3],
                "locale": COUNTRIES[n % 20][1],
            },
        }
    ).encode()


def segments_endpoint_exists() -> bool:
    """Whether the URL resolves to a view of its own (not the profile detail
    reading ``user_id:u1/segments`` as an external id)."""
    from django.urls import Resolver404, resolve

    try:
        match = resolve(f"/api/v1/{profile_external_id(1)}/segments".replace("v1/", "v1/profiles/"))
    except Resolver404:
        return False
    return "segment" in (match.url_name or "") or "Segment" in match.func.__name__


def phase_latency(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from django.db import connection

    from apps.segments.models import Segment

    if args.poll == "auto":
        args.poll = "api" if segments_endpoint_exists() else "db"
        if args.poll == "db":
            say(
                "  ! GET /api/v1/profiles/<external_id>/segments is not there yet: "
                "polling the table segments_membership instead (--poll api to insist)"
            )
    _REDIS[0] = args.redis_db
    broker = f"redis://127.0.0.1:6379/{args.redis_db}"
    env = django_env(args.database, broker)
    redis_flush()
    shoes = Segment.objects.get(key="browsing-shoes")
    token = api_token(env) if args.poll == "api" else ""
    logdir = Path(tempfile.mkdtemp(prefix="cdp-bench-segments-"))
    say(f"\n[latency] gunicorn + Celery worker (Redis db {args.redis_db}), logs in {logdir}")
    static = Path(env["STATIC_ROOT"]) / "staticfiles.json"
    if not static.exists():
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "collectstatic", "--noinput"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    services = Services(env, args.workers, logdir)
    track_headers = {
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
    }
    api_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    latencies: list[float] = []
    timeouts = 0
    try:
        services.wait_ready()
        client, poller = Http(services.port), Http(services.port)
        profiles = _fresh_profiles(args.profiles, args.trials + 2, seed=int(time.time()))
        tag = f"{int(time.time())}"

        def visible(n: int) -> bool:
            if args.poll == "api":
                status, data = poller.request(
                    "GET", f"/api/v1/profiles/{profile_external_id(n)}/segments", None, api_headers
                )
                if status == 404 and b"not found" not in data.lower():
                    raise SystemExit(f"segments endpoint: {status} {data[:200]!r}")
                if status != 200:
                    return False
                return shoes.key in data.decode()
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT 1 FROM segments_membership WHERE segment_id = %s AND profile_id = %s "
                    "AND exited_at IS NULL",
                    [shoes.pk, profile_uuid(n)],
                )
                return cur.fetchone() is not None

        def processed(message_ids: list[str]) -> bool:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM events_event WHERE message_id = ANY(%s) "
                    "AND processed_at IS NOT NULL",
                    [message_ids],
                )
                return int(cur.fetchone()[0]) == len(message_ids)

        def wait(check: Callable[[], bool], timeout: float) -> float | None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if check():
                    return time.monotonic()
                time.sleep(args.poll_interval)
            return None

        # Warm-up: every worker loads its code on its first requests and tasks.
        for n in profiles[:2]:
            for i in range(3):
                client.request("POST", "/v1/track", _track_body(n, i, tag + "w"), track_headers)
            wait(lambda n=n: visible(n), 10)
        say(f"  {wait_for_quiet(args.quiet_wait)}")
        cpu = CpuWatch()
        for k, n in enumerate(profiles[2:]):
            # Two views first, processed, then the third that makes her enter.
            first = [f"lat-{tag}-{n}-{i}" for i in range(2)]
            for i in range(2):
                status, _ = client.request(
                    "POST", "/v1/track", _track_body(n, i, tag), track_headers
                )
                assert status == 200, status
            if wait(lambda first=first: processed(first), 30) is None or visible(n):
                say(f"  ! trial {k}: the first two events were not processed, or she is in")
                continue
            time.sleep(0.2)
            status, _ = client.request("POST", "/v1/track", _track_body(n, 2, tag), track_headers)
            answered = time.monotonic()
            assert status == 200, status
            seen = wait(lambda n=n: visible(n), args.trial_timeout)
            if seen is None:
                timeouts += 1
                say(f"  ! trial {k}: not visible after {args.trial_timeout:g} s")
                continue
            latencies.append(seen - answered)
            if (k + 1) % 10 == 0:
                say(
                    f"  {k + 1} trials: p50 {pct(latencies, 50) * 1000:.0f} ms, "
                    f"p95 {pct(latencies, 95) * 1000:.0f} ms"
                )
        results["lat_cores"] = cpu.cores()
    finally:
        services.stop()
        with contextlib.suppress(Exception):
            redis_flush()
    results.update(latencies=latencies, lat_timeouts=timeouts, lat_poll=args.poll)
    say(
        f"  {len(latencies)} trials ({timeouts} timed out), polling "
        + ("the API" if args.poll == "api" else "segments_membership")
        + f" every {args.poll_interval * 1000:.0f} ms: p50 {pct(latencies, 50) * 1000:.0f} ms, "
        f"p95 {pct(latencies, 95) * 1000:.0f} ms, max {max(latencies, default=0) * 1000:.0f} ms"
    )


# --------------------------------------------------------------------------- main


def summary(results: dict[str, Any]) -> None:
    print("\n" + "=" * 86)
    print(f"{'metric':52} {'value':>14}  target")
    print("-" * 86)

    def row(name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        mark = "" if ok is None else ("  PASS" if ok else "  FAIL")
        print(f"{name:52} {value:>14}  {target}{mark}")

    if "refresh_second_s" in results:
        base = results["baseline_count_s"]
        first, second = results["refresh_first_s"], results["refresh_second_s"]
        row("baseline: count live profiles x features (s)", f"{base:.2f}")
        row("batch refresh, 3 conditions, first (s)", f"{first:.2f}", "<= 10", first <= 10)
        row("batch refresh, steady state (s)", f"{second:.2f}", "<= 10", second <= 10)
        row("  ratio steady refresh : baseline", f"{second / base:.1f}")
        row("  members", f"{results['refresh_size']:,}")
    if "rt_added_ms" in results:
        added = results["rt_added_ms"]
        row("event insert, per event (ms, for scale)", f"{results['rt_insert_ms']:.3f}")
        row("segments.features stage, per event (ms)", f"{results['rt_features_ms']:.3f}")
        ratio = results["rt_features_ms"] / results["rt_insert_ms"]
        row("  ratio features stage : insert", f"{ratio:.1f}")
        row("segments.realtime, 0 segments, per event (ms)", f"{results['rt0_ms']:.3f}")
        row("segments.realtime, 20 segments, per event (ms)", f"{results['rt20_ms']:.3f}")
        row("  added by 20 segments, per event (ms)", f"{added:.3f}", "<= 2", added <= 2)
    if "latencies" in results:
        lat = results["latencies"]
        where = "API" if results["lat_poll"] == "api" else "DB table"
        p95 = pct(lat, 95)
        row(f"event 200 -> visible ({where}), p50 (ms)", f"{pct(lat, 50) * 1000:.0f}")
        row(
            f"event 200 -> visible ({where}), p95 (ms)",
            f"{p95 * 1000:.0f}",
            "<= 1000",
            bool(lat) and p95 <= 1.0 and not results["lat_timeouts"],
        )
        row("  trials / timed out", f"{len(lat)} / {results['lat_timeouts']}", ">= 50 / 0")
    print("=" * 86)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--database", default="cdp_bench_segments")
    p.add_argument("--profiles", type=int, default=1_000_000)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=90, help="the events span this many days")
    p.add_argument("--recent-share", type=float, default=0.01, help="of events in the last hour")
    p.add_argument("--regenerate", action="store_true", help="make the data again")
    p.add_argument("--generate-only", action="store_true")
    p.add_argument("--phases", default="refresh,realtime,latency", help="which measurements to run")
    p.add_argument("--explain", action="store_true", help="print the refresh query's plan")
    p.add_argument("--batches", type=int, default=30, help="real-time batches per variant")
    p.add_argument("--batch-size", type=int, default=100, help="events per real-time batch")
    p.add_argument("--trials", type=int, default=60, help="latency trials")
    p.add_argument(
        "--poll",
        choices=["auto", "api", "db"],
        default="auto",
        help="where the latency phase looks for the membership",
    )
    p.add_argument("--redis-db", type=int, default=REDIS_DB, help="the latency phase's broker db")
    p.add_argument("--poll-interval", type=float, default=0.01, help="seconds")
    p.add_argument("--trial-timeout", type=float, default=10.0, help="seconds")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    p.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for idle")
    p.add_argument("--drop-database", action="store_true", help="drop it at the end")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    ensure_database(args.database)
    with psycopg.connect(dsn_of(args.database), autocommit=True) as conn:
        info = meta_get(conn, "generated")
        wanted = {"profiles": args.profiles, "events": args.events}
        if (
            args.regenerate
            or info is None
            or {k: info.get(k) for k in wanted} != wanted
            or meta_get(conn, "dropped_schema") is not None
        ):
            info = generate(conn, args)
        else:
            say(
                f"[setup] reusing {info['profiles']:,} profiles and {info['events']:,} events "
                f"generated {info['generated_at']} (--regenerate to make them again)"
            )
            freshen_recent(conn, info)
        say(f"[setup] database {args.database}: {data_size(conn)}")
    if args.generate_only:
        return 0
    django_setup(args.database)
    cleanup_previous_runs(info)
    phases = set(args.phases.split(","))
    results: dict[str, Any] = {}
    try:
        if "refresh" in phases:
            phase_refresh(args, results)
        if "realtime" in phases or "latency" in phases:
            if "realtime" in phases:
                phase_realtime(args, results)
            else:
                from apps.segments.models import Segment

                Segment.objects.all().delete()
                _segments_save_twenty()
        if "latency" in phases:
            phase_latency(args, results)
    finally:
        summary(results)
        print(f"total run time {time.monotonic() - started:.0f} s")
        if args.drop_database:
            from django.db import connections

            connections.close_all()
            drop_database(args.database)
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    sys.exit(main())
