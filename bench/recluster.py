#!/usr/bin/env python
"""Reclustering benchmark: a million profiles with ten features, k searched from
2 to 10, end to end (extract, fit, choose, assign, write memberships), against a
bare scikit-learn fit and k-search of the same matrix (issue 12, "Must show").

What it does (see bench/README.md):

1. **Data.** In its own PostgreSQL database (``cdp_bench_recluster``, migrated
   with ``manage.py migrate``) it generates, in SQL, ``--profiles`` profiles and
   their ``ProfileFeatures`` rows, each drawn around one of six behavioural
   archetypes (profile n is archetype n mod 6) with log-normal noise. A later run
   reuses them (``--regenerate`` makes them again; ``--drop-database`` starts
   from an empty database).
2. **Baselines, measured in the same run.** ``SELECT count(*)`` over the features
   table (reading it at all), and the bare fit: the same matrix (read by the
   product's extract, transformed by the same log1p and z-score in numpy) fitted
   by scikit-learn's estimator for every k with the same settings and scored by
   the silhouette on the same bounded sample, the best k taken. No database.
3. **The product's run**, as ``manage.py recluster`` runs it (``recluster`` of
   apps/clustering/run.py, in this process, with its progress lines): the first
   run writes a million new memberships; ``--runs 2`` (the default) runs again
   over the same data, which matches the clusters to the first run's (Hungarian
   assignment), measures stability and swaps in the changes only.

Printed: each phase's seconds, the ratio of the run to the bare fit and to the
count, peak memory (resident set high-water mark, reset before each measured
part), the threadpoolctl report (the BLAS kernel: ``OPENBLAS_CORETYPE`` may be
set to a slower one on some processors), and the recovery of the archetypes
(adjusted Rand index against the truth; not timed).

Run it with the project's virtualenv:  .venv/bin/python bench/recluster.py
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "cdp_bench_recluster"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CONFIG_KEY = "bench"

FEATURES = [
    {"name": "orders_count", "transform": "log1p"},
    {"name": "revenue_total", "transform": "log1p"},
    {"name": "average_order_value", "transform": "log1p"},
    {"name": "days_since_last_order", "transform": "log1p"},
    {"name": "active_days", "transform": "log1p"},
    {"name": "sessions_count", "transform": "log1p"},
    {"name": "average_session_seconds", "transform": "log1p"},
    {"name": "page_views", "transform": "log1p"},
    {"name": "product_views", "transform": "log1p"},
    {"name": "cart_adds", "transform": "log1p"},
]

# Six archetypes: (name, orders, money per order, days since the last order,
# active days, sessions, seconds per session, page views, product views, cart adds).
ARCHETYPES = [
    ("loyal big spenders", 30, 200, 4, 60, 40, 400, 300, 90, 40),
    ("bargain hunters", 12, 15, 20, 45, 60, 200, 500, 300, 60),
    ("one-time buyers", 1, 60, 40, 3, 3, 150, 20, 8, 2),
    ("browsers who never buy", 0, 0, 30, 20, 25, 300, 200, 90, 1),
    ("lapsed customers", 6, 70, 300, 10, 4, 120, 15, 4, 1),
    ("cart abandoners", 0, 0, 25, 8, 12, 250, 60, 40, 25),
]
SPREAD = 0.25  # log-normal sigma around each archetype's means


def say(message: str) -> None:
    print(message, flush=True)


def dsn_of(database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{database}"


# --------------------------------------------------------------------------- memory


def peak_reset() -> None:
    """Reset this process's resident-set high-water mark (Linux clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_mb() -> float:
    """This process's resident-set high-water mark since the last reset, in MB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def backend_cpu() -> float:
    """CPU seconds of this process's PostgreSQL backend so far (same machine)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = int(cur.fetchone()[0])
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    say(f"[setup] dropped database {database}")


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


def _uuid_sql(expr: str) -> str:
    return f"('00000000-0000-4000-8000-' || lpad(to_hex({expr}), 12, '0'))::uuid"


def _array(column: int) -> str:
    return "ARRAY[" + ", ".join(f"{float(a[column])}" for a in ARCHETYPES) + "]::float8[]"


def _noise() -> str:
    """A log-normal factor around 1 (Box-Muller: PostgreSQL 15 has no random_normal)."""
    return f"exp({SPREAD} * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))"


def _features_sql() -> str:
    """One chunk of profiles and their features; profile n is archetype n mod 6."""
    return f"""
    WITH drawn AS (
      SELECT i, {_uuid_sql("i")} AS id, 1 + mod(i, {len(ARCHETYPES)})::int AS a
      FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
    ), raw AS (
      SELECT id,
        CASE WHEN ({_array(1)})[a] = 0 THEN 0
             WHEN ({_array(1)})[a] = 1 THEN 1
             ELSE greatest(2, round(({_array(1)})[a] * {_noise()})) END AS orders,
        ({_array(2)})[a] * {_noise()} AS per_order,
        ({_array(3)})[a] * {_noise()} AS days,
        greatest(1, round(({_array(4)})[a] * {_noise()})) AS active,
        greatest(1, round(({_array(5)})[a] * {_noise()})) AS sessions,
        ({_array(6)})[a] * {_noise()} AS per_session,
        round(({_array(7)})[a] * {_noise()}) AS pages,
        round(({_array(8)})[a] * {_noise()}) AS products,
        round(({_array(9)})[a] * {_noise()}) AS carts
      FROM drawn
    ), profiles AS (
      INSERT INTO identity_profile (id, created_at, updated_at, traits, trait_timestamps,
          first_seen, last_seen, merged_into_id)
      SELECT id, %(now)s - interval '400 days', %(now)s, '{{}}'::jsonb, '{{}}'::jsonb,
        %(now)s - interval '400 days', %(now)s, NULL
      FROM drawn
    )
    INSERT INTO segments_profilefeatures (profile_id, orders_count, revenue_total,
      first_order_at, last_order_at, first_seen_at, last_seen_at, active_days,
      sessions_count, session_seconds_total, page_views, product_views, cart_adds,
      last_cart_at, email_opens, email_clicks, last_device, last_country, category_counts,
      rfm_recency, rfm_frequency, rfm_monetary, rfm_group, last_event_id, session_started_at,
      session_id, updated_at)
    SELECT id, orders, round((orders * per_order)::numeric, 2),
      CASE WHEN orders > 0 THEN %(now)s - (days + 30) * interval '1 day' END,
      CASE WHEN orders > 0 THEN %(now)s - days * interval '1 day' END,
      %(now)s - (days + 30) * interval '1 day', %(now)s, active, sessions,
      round(sessions * per_session)::bigint, pages, products, carts, NULL, 0, 0, '', '',
      '{{}}'::jsonb, NULL, NULL, NULL, '', 0, NULL, '', %(now)s
    FROM raw
    """


def _chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for lo in range(1, total + 1, size):
        yield lo, min(lo + size - 1, total)


def generate(conn: psycopg.Connection, profiles: int) -> dict[str, Any]:
    """Fill the database in SQL, one statement at a time on one connection (other
    engineers share the machine's two cores)."""
    from datetime import UTC, datetime

    conn.execute("SET max_parallel_workers_per_gather = 0")
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET work_mem = '256MB'")
    conn.execute(
        "TRUNCATE segments_profilefeatures, identity_profile, segments_segment, "
        "clustering_clusteringconfig RESTART IDENTITY CASCADE"
    )
    now = datetime.now(UTC).replace(microsecond=0)
    sql = _features_sql()
    conn.execute("SELECT setseed(0.42)")
    t = time.perf_counter()
    for lo, hi in _chunks(profiles, 100_000):
        conn.execute(sql, {"lo": lo, "hi": hi, "now": now})
        spent = time.perf_counter() - t
        say(
            f"  profiles and features {hi:,} / {profiles:,} ({hi / profiles:.0%}), "
            f"{spent:.0f} s, ETA {spent / hi * (profiles - hi):.0f} s"
        )
    for table in ("segments_profilefeatures", "identity_profile"):
        conn.execute(f"VACUUM (ANALYZE) {table}")
    info = {"profiles": profiles, "generated_at": now.isoformat()}
    meta_set(conn, "generated", info)
    say(f"[generate] {profiles:,} profiles in {time.perf_counter() - t:.0f} s")
    return info


# --------------------------------------------------------------------------- django


def django_setup(database: str) -> None:
    env = os.environ
    for key in list(env):
        if key.startswith(("DJANGO_", "CDP_", "CELERY_")) or key in ("DATABASE_URL", "CACHE_URL"):
            del env[key]
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "cdp.settings.production",
            "DATABASE_URL": dsn_of(database),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "CDP_PRIVACY_HASH_KEY": "bench-recluster-" + "k" * 20 + secrets.token_urlsafe(30),
            "CDP_SECRETS_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "SECURE_HSTS_SECONDS": "0",
            "DEBUG": "false",
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def cleanup() -> None:
    """What earlier runs made: configs, runs, clusters, their segments and memberships."""
    from django.db import connection

    with connection.cursor() as cur:
        # Memberships and the outbox by name: they have no foreign key to their
        # segment (segments migration 0006), so CASCADE no longer reaches them,
        # and left behind they would make the "first" run a run of few changes
        # (the segment ids restart at 1).
        cur.execute(
            "TRUNCATE clustering_clusteringconfig, clustering_clusteringrun, clustering_cluster, "
            "segments_segment, segments_membership, segments_membershipchange, "
            "segments_writtenstaging RESTART IDENTITY CASCADE"
        )
        cur.execute(
            "DELETE FROM django_celery_beat_periodictask WHERE task LIKE 'apps.clustering%%'"
        )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def limited(threads: int) -> Any:
    """threadpoolctl's limit on BLAS and OpenMP threads (0: none). It reaches only
    the libraries already loaded: scikit-learn's are loaded here first."""
    import contextlib

    import sklearn.cluster
    import sklearn.metrics  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads) if threads > 0 else contextlib.nullcontext()


def baseline_count() -> tuple[float, int]:
    from django.db import connection

    def run() -> int:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM segments_profilefeatures")
            return int(cur.fetchone()[0])

    run()
    times, count = [], 0
    for _ in range(3):
        seconds, count = timed(run)
        times.append(seconds)
    return statistics.median(times), count


def bare_fit(args: argparse.Namespace) -> dict[str, Any]:
    """The same matrix fitted by scikit-learn alone: every k, the silhouette on
    the same bounded sample, the best k. Times the fit and k-search only."""
    import numpy as np
    from django.utils import timezone
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.metrics import silhouette_score

    from apps.clustering.extract import features_extract

    data = features_extract([f["name"] for f in FEATURES], now=timezone.now())
    x = np.log1p(np.clip(np.nan_to_num(data.matrix, nan=0.0), 0, None))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    peak_reset()
    t, cpu = time.perf_counter(), time.process_time()
    scores = {}
    for k in range(args.k_min, args.k_max + 1):
        if args.algorithm == "minibatch_kmeans":
            model: Any = MiniBatchKMeans(n_clusters=k, random_state=0, n_init=3, batch_size=4096)
        else:
            model = KMeans(n_clusters=k, random_state=0, n_init=3)
        labels = model.fit_predict(x)
        scores[k] = float(
            silhouette_score(x, labels, sample_size=args.silhouette_sample, random_state=0)
        )
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    best = max(scores, key=lambda k: scores[k])
    return {"seconds": seconds, "cpu": cpu, "best_k": best, "scores": scores, "peak_mb": peak_mb()}


def product_run(args: argparse.Namespace, config_id: int, label: str) -> dict[str, Any]:
    from apps.clustering.run import recluster

    started = time.perf_counter()
    last = [started]

    def progress(phase: str) -> None:
        now = time.perf_counter()
        say(f"  [{label}] {phase} (at {now - started:.1f} s, +{now - last[0]:.1f} s)")
        last[0] = now

    peak_reset()
    cpu, db_cpu = time.process_time(), backend_cpu()
    seconds, run = timed(lambda: recluster(config_id=config_id, progress=progress))
    chunks = list(run.chunks.order_by("index").values_list("seconds", flat=True)) if run else []
    if chunks:
        say(
            f"  [{label}] assigned in {len(chunks)} chunks (in this process: eager Celery), "
            + ", ".join(f"{s:.2f}" for s in chunks if s is not None)
            + " s"
        )
    cpu, db_cpu = time.process_time() - cpu, backend_cpu() - db_cpu
    assert run is not None
    if run.status != "succeeded":
        raise SystemExit(f"the run {run.status}: {run.error}")
    # What the run's own timings leave out (its write includes the commit of the
    # swap, where the memberships' deferred foreign keys are checked).
    outside = seconds - sum(float(v) for v in run.timings.values())
    return {
        "seconds": seconds,
        "cpu": cpu,
        "db_cpu": db_cpu,
        "outside": outside,
        "run": run,
        "peak_mb": peak_mb(),
    }


def recovery(run: Any, profiles: int) -> float:
    """The adjusted Rand index of the run's clusters against the archetypes."""
    import numpy as np
    from django.db import connection
    from sklearn.metrics import adjusted_rand_score

    segments = {c.segment_id: c.index for c in run.clusters.all()}
    with connection.cursor() as cur:
        cur.execute(
            "SELECT ('x' || right(replace(profile_id::text, '-', ''), 12))::bit(48)::bigint, "
            "segment_id FROM segments_membership "
            "WHERE exited_at IS NULL AND segment_id = ANY(%s)",
            [list(segments)],
        )
        rows = np.array(cur.fetchall(), dtype=np.int64)
    truth = rows[:, 0] % len(ARCHETYPES)
    found = np.array([segments[s] for s in rows[:, 1]])
    assert len(rows) == profiles, (len(rows), profiles)
    return float(adjusted_rand_score(truth, found))


def blas_report() -> str:
    from threadpoolctl import threadpool_info

    parts = []
    for pool in threadpool_info():
        parts.append(
            f"{pool.get('internal_api')} {pool.get('version', '')} "
            f"(kernel {pool.get('architecture', '-')}, {pool.get('num_threads')} threads)"
        )
    core = os.environ.get("OPENBLAS_CORETYPE")
    return "; ".join(parts) + f"; OPENBLAS_CORETYPE={core or 'unset'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--k-min", type=int, default=2)
    parser.add_argument("--k-max", type=int, default=10)
    parser.add_argument(
        "--algorithm", choices=["minibatch_kmeans", "kmeans"], default="minibatch_kmeans"
    )
    parser.add_argument("--silhouette-sample", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=2, choices=[1, 2])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads for the fits, bare and product alike (0: the libraries' "
        "default, one per core)",
    )
    parser.add_argument("--regenerate", action="store_true", help="make the data again")
    parser.add_argument(
        "--drop-database", action="store_true", help=f"drop {DATABASE} first (then regenerate)"
    )
    args = parser.parse_args()

    say(f"bench/recluster.py: {args.profiles:,} profiles, {len(FEATURES)} features, "
        f"k {args.k_min}..{args.k_max}, {args.algorithm}")  # fmt: skip
    if args.drop_database:
        drop_database(DATABASE)
    ensure_database(DATABASE)
    with psycopg.connect(dsn_of(DATABASE), autocommit=True) as conn:
        info = meta_get(conn, "generated")
        if args.regenerate or args.drop_database or not info or info["profiles"] != args.profiles:
            say(f"[generate] {args.profiles:,} profiles and their features, in SQL")
            generate(conn, args.profiles)
        else:
            say(f"[generate] reusing {info['profiles']:,} profiles made {info['generated_at']}")

    django_setup(DATABASE)
    cleanup()
    say(f"[blas] {blas_report()}")

    count_s, count = baseline_count()
    say(f"[baseline] SELECT count(*) over the features: {count:,} rows in {count_s * 1000:.0f} ms")

    from apps.clustering.models import ClusteringConfig
    from apps.clustering.services import config_save

    config = config_save(
        config=ClusteringConfig(
            key=CONFIG_KEY,
            name="Bench",
            features=FEATURES,
            algorithm=args.algorithm,
            k_min=args.k_min,
            k_max=args.k_max,
            k_selection="silhouette",
            silhouette_sample_size=args.silhouette_sample,
            min_cluster_size=100,
            schedule="",
            time_limit_seconds=3600,
        )
    )

    say("[bare] scikit-learn alone: fit every k and score the silhouette on the same sample")
    with limited(args.threads):
        bare = bare_fit(args)
    say(
        f"  {bare['seconds']:.1f} s ({bare['cpu']:.1f} s of CPU), best k={bare['best_k']}, "
        f"peak {bare['peak_mb']:.0f} MB"
    )

    results = []
    for i in range(args.runs):
        label = "first run" if i == 0 else "second run"
        say(f"[product] {label}: recluster (extract, fit, choose, assign, write)")
        with limited(args.threads):
            out = product_run(args, config.pk, label)
        run = out["run"]
        timings = run.timings
        say(
            f"  {label}: {out['seconds']:.1f} s end to end ({out['cpu']:.1f} s of CPU in this "
            f"process), k={run.chosen_k}, "
            f"peak {out['peak_mb']:.0f} MB; phases: "
            + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
        )
        if run.stability_ari is not None:
            say(f"  stability against the first run: ARI {run.stability_ari:.4f}")
        ari = recovery(run, args.profiles)
        say(f"  recovery of the {len(ARCHETYPES)} archetypes: ARI {ari:.4f} (not timed)")
        results.append((label, out, ari))

    say("")
    say("summary")
    say(f"  profiles {args.profiles:,}, features {len(FEATURES)}, k {args.k_min}..{args.k_max}, "
        f"{args.algorithm}, silhouette on {args.silhouette_sample:,}")  # fmt: skip
    say(f"  blas: {blas_report()}; fits limited to {args.threads or 'default'} thread(s)")
    say(f"  machine: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end")
    say(f"  baseline count(*): {count_s * 1000:.0f} ms")
    say(
        f"  bare scikit-learn fit + k-search: {bare['seconds']:.1f} s "
        f"({bare['cpu']:.1f} s CPU, k={bare['best_k']}), peak {bare['peak_mb']:.0f} MB"
    )
    for label, out, ari in results:
        run = out["run"]
        fit_choose = float(run.timings.get("fit", 0)) + float(run.timings.get("choose", 0))
        target = "meets" if out["seconds"] <= 120 else "misses"
        say(
            f"  {label}: {out['seconds']:.1f} s end to end ({out['cpu']:.1f} s CPU; {target} "
            "the 120 s target), "
            f"{out['seconds'] / bare['seconds']:.2f}x the bare fit "
            f"(its fit + choose {fit_choose:.1f} s: {fit_choose / bare['seconds']:.2f}x), "
            f"{out['seconds'] / max(count_s, 1e-9):.0f}x the count; k={run.chosen_k}; "
            f"peak {out['peak_mb']:.0f} MB; ARI vs archetypes {ari:.3f}"
        )
        say(
            "    phases: "
            + ", ".join(f"{n} {s:.2f} s" for n, s in run.timings.items())
            + f", outside the phases {out['outside']:.2f} s; CPU: this process "
            f"{out['cpu']:.1f} s, its PostgreSQL backend {out['db_cpu']:.1f} s"
        )


if __name__ == "__main__":
    main()
