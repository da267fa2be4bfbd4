#!/usr/bin/env python
"""Consent benchmark: the selector per request, the filter over a million profiles,
and the cost of the consent gate at ingestion.

1. Drops and recreates the PostgreSQL database ``cdp_bench_consent``, migrates it,
   and fills it with ``--profiles`` profiles (default 1,000,000) by SQL, each with
   a consent statement for a purpose about half the time (granted, denied,
   withdrawn, or a grant that has lapsed), and the derived state rows.
2. ``has_consent(profile, purpose)`` for random profiles, against the baseline of
   reading one profile by primary key (the least a decision needs), same run.
3. Streaming the ids of every consenting profile (``profiles_with_consent`` on
   ``Profile.objects.all()``, server-side cursor) against streaming every
   profile id with no filter, same run.
4. ``consent_gate`` on 100-event batches: with no purposes (the default), and
   with a storage-gating purpose whose state is looked up for every event.

Run:  .venv/bin/python bench/consent.py [--profiles 1000000]
Only the local PostgreSQL is contacted.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "cdp_bench_consent"
DSN = f"postgres://postgres@127.0.0.1:5432/{DB}"


def sh(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(args, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


def setup_database(n: int) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB}")
    env = {**os.environ, "DATABASE_URL": DSN, "DJANGO_SETTINGS_MODULE": "cdp.settings.local"}
    t = time.perf_counter()
    sh(sys.executable, "manage.py", "migrate", "--noinput", env=env)
    print(f"migrated in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    with psycopg.connect(DSN, autocommit=True) as c:
        c.execute(
            "INSERT INTO consent_purpose (key, name, description, legal_basis, required, "
            "default_granted, expiry_days, notice_version, notice_text, gates_storage, "
            "storage_policy, anonymized_properties, gates_personalization, gated_destinations, "
            "gpc_opt_out, created_at, updated_at) VALUES ('marketing', 'Marketing', '', "
            "'consent', false, false, 365, 'v1', 'text', true, 'drop', '[]', true, '[]', false, "
            "now(), now())"
        )
        c.execute(
            "INSERT INTO identity_profile (id, traits, trait_timestamps, created_at, updated_at) "
            "SELECT gen_random_uuid(), '{}', '{}', now(), now() FROM generate_series(1, %s)",
            [n],
        )
        # About half the profiles said something: granted (30%), denied (8%),
        # withdrawn (7%), a grant older than the expiry (5%).
        c.execute(
            """
            INSERT INTO consent_consentrecord (profile_id, origin_profile_id, purpose_id, status,
                given_at, recorded_at, source, method, notice_version, notice_hash, ip_hash,
                user_agent, page_url, tcf_string, gcm_flags, event_message_id)
            SELECT id, id, (SELECT id FROM consent_purpose), s.status,
                   now() - s.age, now(), 'event', '', 'v1', '', '', '', '', '', '{}', ''
            FROM (SELECT id, random() AS r FROM identity_profile) p
            CROSS JOIN LATERAL (SELECT
                CASE WHEN p.r < 0.30 THEN 'granted' WHEN p.r < 0.38 THEN 'denied'
                     WHEN p.r < 0.45 THEN 'withdrawn' ELSE 'granted' END AS status,
                CASE WHEN p.r >= 0.45 THEN interval '400 days' ELSE interval '10 days' END AS age
            ) s
            WHERE p.r < 0.50
            """
        )
        c.execute(
            """
            INSERT INTO consent_consentstate (profile_id, purpose_id, status, given_at,
                expires_at, record_id)
            SELECT profile_id, purpose_id, status, given_at,
                   CASE WHEN status = 'granted' THEN given_at + interval '365 days' END, id
            FROM consent_consentrecord
            """
        )
        c.execute("ANALYZE")
    print(f"filled {n:,} profiles in {time.perf_counter() - t:.1f} s")


def measure(n: int) -> None:
    os.environ["DATABASE_URL"] = DSN
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings.local")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection, transaction
    from django.utils import timezone

    from apps.consent.selectors import has_consent, profiles_with_consent, purpose_rule
    from apps.consent.services import consent_gate
    from apps.identity.models import Profile

    ids = list(Profile.objects.values_list("id", flat=True)[:20000])
    sample = random.Random(7).sample(ids, 2000)
    rule = purpose_rule("marketing")

    def per_call(fn) -> float:  # type: ignore[no-untyped-def]
        for pid in sample[:200]:
            fn(pid)
        times = []
        for pid in sample:
            t = time.perf_counter()
            fn(pid)
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e6, sorted(times)[int(len(times) * 0.99)] * 1e6

    base_med, base_p99 = per_call(
        lambda pid: Profile.objects.filter(pk=pid).values_list("id").first()
    )
    sel_med, sel_p99 = per_call(lambda pid: has_consent(pid, rule))
    print("\n== per-request decision: has_consent(profile, purpose)")
    print(f"baseline (one profile by primary key): median {base_med:.0f} µs, p99 {base_p99:.0f} µs")
    print(f"has_consent:                           median {sel_med:.0f} µs, p99 {sel_p99:.0f} µs")
    print(f"ratio has_consent / baseline: {sel_med / base_med:.2f}")

    def stream(qs) -> tuple[int, float]:  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        with transaction.atomic():
            count = sum(1 for _ in qs.values_list("id", flat=True).iterator(chunk_size=20000))
        return count, time.perf_counter() - t

    total, base_s = stream(Profile.objects.all())
    kept, filt_s = stream(profiles_with_consent(Profile.objects.all(), rule))
    at = timezone.now() - timezone.timedelta(days=5)
    kept_at, at_s = stream(profiles_with_consent(Profile.objects.all(), rule, at=at))
    print(f"\n== export filter over {total:,} profiles (server-side cursor, ids streamed)")
    print(f"baseline (all ids, no filter): {base_s:.2f} s ({total / base_s:,.0f} rows/s)")
    print(f"profiles_with_consent (now):   {filt_s:.2f} s, {kept:,} kept")
    print(f"profiles_with_consent (at t):  {at_s:.2f} s, {kept_at:,} kept (from the log)")
    print(f"ratio filter / baseline: {filt_s / base_s:.2f}")

    # The gate: rows as the parser makes them, for people with and without state.
    from apps.identity.models import Identifier

    with transaction.atomic():
        Identifier.objects.bulk_create(
            [
                Identifier(profile_id=pid, type="user_id", value=f"user-{i}")
                for i, pid in enumerate(sample)
            ]
        )

    def rows(k: int) -> list[dict]:  # type: ignore[type-arg]
        now = timezone.now()
        return [
            {
                "message_id": f"m{k}-{i}",
                "type": "track",
                "event": "Product Viewed",
                "name": "",
                "user_id": f"user-{(k * 100 + i) % len(sample)}",
                "anonymous_id": f"anon-{k}-{i}",
                "previous_id": "",
                "group_id": "",
                "timestamp": now,
                "properties": {},
                "traits": {},
                "context": {},
            }
            for i in range(100)
        ]

    def gate_cost() -> float:
        times = []
        for k in range(60):
            batch = rows(k)
            t = time.perf_counter()
            with transaction.atomic():
                consent_gate(rows=batch)
            times.append(time.perf_counter() - t)
        return statistics.median(times[10:]) / 100 * 1e6

    with_purpose = gate_cost()
    with connection.cursor() as c:
        c.execute("UPDATE consent_purpose SET gates_storage = false, gates_personalization = false")
    from apps.consent.models import ConsentRecord  # noqa: F401  (purposes still exist)

    with connection.cursor() as c:
        c.execute("DELETE FROM consent_consentstate")
    from django.conf import settings

    settings.CDP["CONSENT_CACHE_SECONDS"] = 0
    no_storage = gate_cost()
    print("\n== consent gate at ingestion (100-event batches)")
    print(f"storage-gating purpose, state looked up: {with_purpose:.1f} µs per event")
    print(f"purposes that gate nothing at ingestion: {no_storage:.1f} µs per event")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--skip-setup", action="store_true", help="reuse the database")
    args = parser.parse_args()
    if not args.skip_setup:
        setup_database(args.profiles)
    measure(args.profiles)


if __name__ == "__main__":
    main()
