#!/usr/bin/env python
"""Where a first reclustering run's write goes (issue 12): the swap's entry
statement for every current member in cdp_bench_recluster (a million after
bench/recluster.py), on empty copies of the membership and outbox tables,
variant by variant (bench/README.md, "recluster.py").

Each variant: fresh empty copies with the primary keys and the indexes it keeps
(the real tables' definitions), the foreign keys it keeps (as Django makes them,
DEFERRABLE INITIALLY DEFERRED, here fired IMMEDIATE so that EXPLAIN shows each
trigger's time), CHECKPOINT, then the entry statement (membership INSERT ...
SELECT from the staged members, outbox rows in the same statement) under EXPLAIN
(ANALYZE, BUFFERS, WAL), its WAL volume and its COMMIT timed. Prints one JSON
line per variant. Needs the PostgreSQL superuser (CHECKPOINT), like the bench.

Run: flock /tmp/bench.lock .venv/bin/python bench/recluster_write.py [VARIANT ...]
(a variant by name or number; all by default). Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import json
import sys
import time

import psycopg

DSN = "postgresql://postgres@127.0.0.1:5432/cdp_bench_recluster"

MEMBERSHIP_INDEXES = [
    "membership_current_uniq",
    "membership_profile_idx",
    "membership_profile_cur_idx",
    "membership_current_idx",
    "membership_exited_idx",
]
OUTBOX_INDEXES = ["membership_change_seg_idx", "membership_change_prof_idx"]


def idx_defs(conn, table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table]
    ).fetchall()
    return dict(rows)


def setup_stage(conn) -> int:
    conn.execute("DROP TABLE IF EXISTS meas_stage")
    conn.execute(
        """CREATE UNLOGGED TABLE meas_stage AS
           SELECT segment_id, profile_id, 0.5::float8 AS distance FROM segments_membership
            WHERE exited_at IS NULL"""
    )
    conn.execute("ANALYZE meas_stage")
    return conn.execute("SELECT count(*) FROM meas_stage").fetchone()[0]


REASON = (
    "jsonb_build_object('source','cluster','text','cluster 3 of run 17: nearest centroid',"
    "'run',17,'cluster',3)"
)


def variant(
    conn, name: str, *, fks: set[str], drop: set[str], lock: bool = False, reason: str = REASON
) -> dict:
    defs_m = idx_defs(conn, "segments_membership")
    defs_c = idx_defs(conn, "segments_membershipchange")
    conn.execute("DROP TABLE IF EXISTS meas_m, meas_c")
    conn.execute(
        "CREATE TABLE meas_m (LIKE segments_membership INCLUDING DEFAULTS "
        "INCLUDING IDENTITY INCLUDING CONSTRAINTS)"
    )
    conn.execute(
        "CREATE TABLE meas_c (LIKE segments_membershipchange INCLUDING DEFAULTS "
        "INCLUDING IDENTITY INCLUDING CONSTRAINTS)"
    )
    conn.execute("ALTER TABLE meas_m ADD PRIMARY KEY (id)")
    conn.execute("ALTER TABLE meas_c ADD PRIMARY KEY (id)")
    for iname, idef in list(defs_m.items()) + list(defs_c.items()):
        if iname.endswith("_pkey") or iname in drop:
            continue
        if iname not in MEMBERSHIP_INDEXES + OUTBOX_INDEXES:
            print("  note: extra index", iname, idef)
        new = (
            idef.replace("public.segments_membershipchange", "meas_c")
            .replace("public.segments_membership ", "meas_m ")
            .replace(f"INDEX {iname}", f"INDEX m_{iname}")
        )
        conn.execute(new)
    for fk in fks:
        table, col, ref = {
            "m.segment": ("meas_m", "segment_id", "segments_segment"),
            "m.profile": ("meas_m", "profile_id", "identity_profile"),
            "c.segment": ("meas_c", "segment_id", "segments_segment"),
            "c.profile": ("meas_c", "profile_id", "identity_profile"),
        }[fk]
        conn.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT fk_{fk.replace('.', '_')} FOREIGN KEY ({col}) "
            f"REFERENCES {ref} (id) DEFERRABLE INITIALLY DEFERRED"
        )
    conn.commit()
    conn.execute("CHECKPOINT")
    conn.commit()
    out: dict = {"variant": name}
    t = time.perf_counter()
    with conn.transaction():
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        conn.execute("SET LOCAL enable_nestloop = off")
        wal0 = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        if lock:
            t0 = time.perf_counter()
            plan = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) "
                "SELECT 1 FROM identity_profile p WHERE p.id IN "
                "(SELECT profile_id FROM meas_stage) AND p.merged_into_id IS NULL "
                "FOR KEY SHARE OF p"
            ).fetchone()[0]
            out["lock_s"] = round(time.perf_counter() - t0, 2)
            out["lock_wal_bytes"] = plan[0]["Plan"].get("WAL Bytes")
        t0 = time.perf_counter()
        plan = conn.execute(
            f"""EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON)
            WITH added AS (
              INSERT INTO meas_m (segment_id, profile_id, entered_at, exited_at, reason,
                  exit_reason, source, version, changed_at)
              SELECT s.segment_id, s.profile_id, now(), NULL,
                     {reason} || jsonb_build_object('distance', s.distance),
                     '{{}}'::jsonb, 'cluster', 1, now()
                FROM meas_stage s
              RETURNING segment_id, profile_id, version),
            out AS (
              INSERT INTO meas_c (segment_id, profile_id, kind, at, source, version)
              SELECT segment_id, profile_id, 'entered', now(), 'cluster', version FROM added)
            SELECT segment_id, count(*) FROM added GROUP BY segment_id"""
        ).fetchone()[0]
        out["statement_s"] = round(time.perf_counter() - t0, 2)
        top = plan[0]
        out["exec_ms"] = round(top["Execution Time"])
        out["triggers"] = {
            tr["Trigger Name"] + (f" on {tr.get('Relation')}" if tr.get("Relation") else ""): (
                round(tr["Time"]),
                tr["Calls"],
            )
            for tr in top.get("Triggers", [])
        }

        def walk(node, acc):
            if node.get("Node Type") == "ModifyTable":
                acc.append(
                    (
                        node.get("Relation Name"),
                        round(node["Actual Total Time"]),
                        node.get("WAL Bytes"),
                        node.get("WAL FPI"),
                        node.get("WAL Records"),
                    )
                )
            for child in node.get("Plans", []):
                walk(child, acc)
            return acc

        out["modify"] = walk(top["Plan"], [])
        wal1 = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        out["wal_mb"] = round(
            conn.execute("SELECT pg_wal_lsn_diff(%s, %s)::float8", [wal1, wal0]).fetchone()[0]
            / 1e6,
            1,
        )
        t1 = time.perf_counter()
    out["commit_s"] = round(time.perf_counter() - t1, 2)
    out["total_s"] = round(time.perf_counter() - t, 2)
    conn.execute("DROP TABLE IF EXISTS meas_m, meas_c")
    conn.commit()
    return out


ALL = {"m.segment", "m.profile", "c.segment", "c.profile"}
PROFILE = {"m.profile", "c.profile"}

VARIANTS = {
    "as built": dict(fks=ALL, drop=set()),
    "no segment FKs": dict(fks=PROFILE, drop=set()),
    "no FKs": dict(fks=set(), drop=set()),
    "no FKs, profiles locked once in one statement (FOR KEY SHARE)": dict(
        fks=set(), drop=set(), lock=True
    ),
    "no FKs, no membership_profile_cur_idx": dict(fks=set(), drop={"membership_profile_cur_idx"}),
    "no FKs, no secondary index": dict(fks=set(), drop=set(MEMBERSHIP_INDEXES + OUTBOX_INDEXES)),
    "no FKs, reason {}": dict(fks=set(), drop=set(), reason="'{}'::jsonb"),
}


def main() -> None:
    wanted = sys.argv[1:] or list(VARIANTS)
    with psycopg.connect(DSN) as conn:
        n = setup_stage(conn)
        conn.commit()
        print(f"staged members: {n:,}", flush=True)
        for name in wanted:
            if name.isdigit():
                name = list(VARIANTS)[int(name)]
            r = variant(conn, name, **VARIANTS[name])
            print(json.dumps(r), flush=True)
        conn.execute("DROP TABLE IF EXISTS meas_stage")
        conn.commit()


if __name__ == "__main__":
    main()
