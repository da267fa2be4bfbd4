#!/usr/bin/env python
"""Ingestion benchmark: the Segment HTTP API as production serves it, against PostgreSQL.

What it does, in one bounded run (see bench/README.md):

1. Drops and recreates a scratch database (``cdp_bench`` by default) on
   postgres://postgres@127.0.0.1:5432, migrates it and creates a source.
2. Baseline: inserts the same event rows straight into an equivalent table
   (``LIKE events_event INCLUDING ALL`` + the same foreign key) with psycopg, from
   the same number of concurrent clients: one multi-row ``INSERT ... ON CONFLICT
   DO NOTHING RETURNING id`` of ``--batch-size`` rows and one COMMIT per batch, which
   is exactly the work one ``/v1/batch`` request must make durable before answering
   (the ratio is taken against it); and ``COPY`` per batch with a commit per batch,
   printed for information.
3. Starts gunicorn with ``cdp.wsgi`` and ``cdp.settings.production`` on a free port
   of 127.0.0.1, with a real Celery broker (Redis db 15, flushed before and after)
   so that event processing is only *queued* by the requests: this benchmark
   measures ingestion, not identity resolution.
4. Posts ``--events`` events as ``/v1/batch`` requests from ``--clients`` client
   processes over keep-alive connections (bodies pre-built before the clock starts).
5. Sends single ``/v1/track`` requests open-loop at ``--rate`` requests/s for
   ``--duration`` seconds; latency is measured from each request's *scheduled*
   time, so a stalled server cannot hide its queueing (no coordinated omission).
6. Repeats the batch load once more (``--rounds 2``) and prints the resident memory
   of every gunicorn worker before and after each round: it must not grow with the
   number of events.

Run it with the project's virtualenv:  .venv/bin/python bench/ingest.py
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import itertools
import multiprocessing as mp
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
STATIC_ROOT = Path(tempfile.gettempdir()) / "cdp-bench-static"
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_DB = 15
WRITE_KEY = "bench_write_key_0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Filled in the parent before the client processes are forked (copy-on-write).
_BODIES: list[bytes] = []
_BODY_EVENTS: list[int] = []
_BASELINE_BATCHES: list[list[tuple[Any, ...]]] = []

COLUMNS = (
    "source_id",
    "message_id",
    "type",
    "event",
    "name",
    "user_id",
    "anonymous_id",
    "previous_id",
    "group_id",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "timestamp_corrected",
    "properties",
    "traits",
    "context",
    "extra",
)


# --------------------------------------------------------------------------- events

_PRODUCTS = [
    ("Games", "Hasbro", "Monopoly: 3rd Edition"),
    ("Games", "Mattel", "Uno Card Game"),
    ("Books", "Penguin", "The Pragmatic Programmer"),
    ("Outdoor", "Patagonia", "Nano Puff Jacket"),
    ("Kitchen", "OXO", "Good Grips Salad Spinner"),
    ("Audio", "Sony", "WH-1000XM5 Headphones"),
    ("Toys", "LEGO", "Classic Creative Brick Box"),
    ("Garden", "Fiskars", "Bypass Pruning Shears"),
]
_USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
]


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def make_event(rng: random.Random, tag: str, i: int, now: datetime) -> dict[str, Any]:
    """One realistic analytics.js 'Product Viewed' track call (about 500-600 bytes)."""
    category, _brand, name = rng.choice(_PRODUCTS)
    pid = rng.randrange(1, 100_000)
    ts = now - timedelta(milliseconds=rng.randrange(50, 5_000))
    event: dict[str, Any] = {
        "type": "track",
        "event": "Product Viewed",
        "messageId": f"ajs-{tag}-{i:09d}-{rng.getrandbits(48):012x}",
        "anonymousId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "timestamp": _iso(ts),
        "sentAt": _iso(now),
        "properties": {
            "product_id": f"P-{pid:06d}",
            "category": category,
            "name": name,
            "price": round(rng.uniform(3, 300), 2),
            "currency": "USD",
        },
        "context": {
            "library": {"name": "analytics.js", "version": "4.1.0"},
            "page": {"path": f"/products/{pid}", "search": ""},
            "userAgent": rng.choice(_USER_AGENTS),
        },
    }
    if rng.random() < 0.4:
        event["userId"] = f"user-{rng.randrange(1, 50_000)}"
    return event


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def baseline_row(event: dict[str, Any], source_id: int, received_at: datetime) -> tuple[Any, ...]:
    """The events_event row the server stores for this event (same columns and values)."""
    original = _parse_ts(event["timestamp"])
    sent_at = _parse_ts(event["sentAt"])
    context = {**event["context"], "ip": HOST}
    return (
        source_id,
        event["messageId"],
        event["type"],
        event["event"],
        "",
        event.get("userId", ""),
        event["anonymousId"],
        "",
        "",
        received_at - (sent_at - original),
        original,
        sent_at,
        received_at,
        False,
        orjson.dumps(event["properties"]).decode(),
        "{}",
        orjson.dumps(context).decode(),
        "{}",
    )


def build_batches(
    n_events: int, batch_size: int, tag: str, source_id: int | None, seed: int
) -> tuple[list[bytes], list[int], list[list[tuple[Any, ...]]]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    bodies: list[bytes] = []
    counts: list[int] = []
    rows: list[list[tuple[Any, ...]]] = []
    for start in range(0, n_events, batch_size):
        events = [
            make_event(rng, tag, i, now) for i in range(start, min(start + batch_size, n_events))
        ]
        bodies.append(orjson.dumps({"batch": events, "sentAt": _iso(now)}))
        counts.append(len(events))
        if source_id is not None:
            rows.append([baseline_row(e, source_id, now) for e in events])
    return bodies, counts, rows


# --------------------------------------------------------------------------- process stats


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def children_of(pid: int) -> list[int]:
    text = _read(f"/proc/{pid}/task/{pid}/children")
    if text:
        return sorted(int(p) for p in text.split())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def rss_kib(pid: int) -> int:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def pids_named(name: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _read(f"/proc/{entry}/comm").strip() == name:
            out.append(int(entry))
    return out


def busy_cpu_seconds() -> float:
    """CPU seconds all CPUs spent not idle, since boot (first line of /proc/stat)."""
    fields = _read("/proc/stat").splitlines()[0].split()[1:]
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / CLK_TCK


# /sys/dev/block/<major>:<minor>/stat of the disk holding PostgreSQL's data directory
# (set in main); None when it cannot be found.
DISK_STAT: str | None = None


def find_disk_stat(dsn: str) -> str | None:
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        st = os.stat(row[0]) if row else None
    except (psycopg.Error, OSError):
        return None
    if st is None:
        return None
    path = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat"
    return path if os.path.exists(path) else None


def disk_sample() -> tuple[int, int, int]:
    """(ms the disk was busy, cache flushes, ms spent in flushes) since boot.

    A COMMIT waits for the WAL to be flushed to the disk (fdatasync), so the
    flushes' latency is the floor of every request's latency.
    """
    if not DISK_STAT:
        return (0, 0, 0)
    fields = _read(DISK_STAT).split()
    if len(fields) < 17:
        return (int(fields[9]), 0, 0) if len(fields) >= 10 else (0, 0, 0)
    return (int(fields[9]), int(fields[15]), int(fields[16]))


def disk_note(a: tuple[int, int, int], b: tuple[int, int, int], seconds: float) -> str:
    if not DISK_STAT or seconds <= 0:
        return ""
    busy = (b[0] - a[0]) / 1000 / seconds
    flushes = b[1] - a[1]
    mean = (b[2] - a[2]) / flushes if flushes else 0.0
    return f"disk busy {busy:.0%}, {flushes} flushes averaging {mean:.1f} ms"


class CpuMeter:
    """Where the machine's CPU went during a phase.

    gunicorn: the master and its workers; postgres: the server's auxiliary processes
    and the backends connected to the bench database (backends that start and end
    inside the phase are reported by the clients themselves); other: everything else
    that ran on the machine meanwhile (another test run, say), which makes the
    numbers of that phase unreliable.
    """

    def __init__(self, master: int | None, database: str) -> None:
        self.master = master
        self.database = database
        self.start = self._sample()
        self.busy0 = busy_cpu_seconds()
        self.disk0 = disk_sample()
        self.t0 = time.monotonic()

    def _sample(self) -> dict[str, dict[int, float]]:
        groups: dict[str, dict[int, float]] = {"postgres": {}, "redis": {}, "gunicorn": {}}
        for pid in pids_named("postgres"):
            cmdline = _read(f"/proc/{pid}/cmdline").replace("\0", " ")
            # Backends of other databases (someone's tests) are not ours.
            if " postgres " in cmdline and f" {self.database} " not in cmdline:
                continue
            groups["postgres"][pid] = cpu_seconds(pid)
        for pid in pids_named("redis-server"):
            groups["redis"][pid] = cpu_seconds(pid)
        if self.master:
            for pid in [self.master, *children_of(self.master)]:
                groups["gunicorn"][pid] = cpu_seconds(pid)
        return groups

    def stop(self, extra_postgres: float = 0.0, loadgen: float = 0.0) -> dict[str, float]:
        end = self._sample()
        wall = time.monotonic() - self.t0
        busy = busy_cpu_seconds() - self.busy0
        used = {
            group: sum(v - self.start[group].get(pid, 0.0) for pid, v in end[group].items())
            for group in end
        }
        used["postgres"] += extra_postgres
        used["loadgen"] = loadgen
        used["other"] = max(0.0, busy - sum(used.values()))
        used["wall"] = wall
        used["busy"] = busy
        self.disk = disk_note(self.disk0, disk_sample(), wall)
        return used


# --------------------------------------------------------------------------- HTTP client


def _auth_header() -> str:
    return "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


class Client:
    """One persistent HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": _auth_header(),
            "User-Agent": "cdp-bench/1",
        }
        self.reconnects = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            self.conn.connect()
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.reconnects += 1
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST; one retry on a fresh connection if a reused one was closed under us."""
        for attempt in (0, 1):
            reused = self.conn is not None
            try:
                conn = self._connection()
                conn.request("POST", path, body, self.headers)
                response = conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt or not reused:
                    raise
        raise AssertionError("unreachable")


def accepted_events(status: int, data: bytes, sent: int) -> tuple[int, str | None]:
    """Events the server says it accepted, and an error label if the request failed."""
    if status != 200:
        return 0, f"HTTP {status}"
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        return 0, "non-JSON 200"
    if not isinstance(answer, dict) or answer.get("success") is not True:
        return 0, "200 without success:true"
    if "rejected" in answer:
        return int(answer.get("accepted", 0)), "some events rejected"
    return sent, None


# --------------------------------------------------------------------------- batch phase


def _batch_client(
    port: int,
    next_index: Any,
    barrier: Any,
    deadline_s: float,
    results: Any,
) -> None:
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    client = Client(port)
    ok_requests = ok_events = 0
    errors: dict[str, int] = {}
    latencies: list[float] = []
    barrier.wait(timeout=60)
    t_start = time.monotonic()
    deadline = t_start + deadline_s
    t_end = t_start
    while time.monotonic() < deadline:
        with next_index.get_lock():
            i = next_index.value
            next_index.value += 1
        if i >= len(_BODIES):
            break
        t0 = time.monotonic()
        try:
            status, data = client.post("/v1/batch", _BODIES[i])
        except (OSError, http.client.HTTPException) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            client.close()
            continue
        t_end = time.monotonic()
        latencies.append(t_end - t0)
        accepted, error = accepted_events(status, data, _BODY_EVENTS[i])
        ok_events += accepted
        if error:
            errors[error] = errors.get(error, 0) + 1
        else:
            ok_requests += 1
    client.close()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    results.put(
        {
            "ok_requests": ok_requests,
            "ok_events": ok_events,
            "errors": errors,
            "t_start": t_start,
            "t_end": t_end,
            "latencies": latencies,
            "connects": client.reconnects,
            "cpu": cpu,
        }
    )


@dataclass
class PhaseResult:
    name: str
    events: int = 0
    seconds: float = 0.0
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    client_cpu: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    connects: int = 0
    windows: list[str] = field(default_factory=list)
    disk: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _run_processes(
    name: str, target: Any, args: tuple[Any, ...], clients: int, deadline_s: float
) -> list[dict[str, Any]]:
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    barrier = ctx.Barrier(clients)
    procs = [
        ctx.Process(target=target, args=(*args, barrier, deadline_s, results), daemon=True)
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    out = []
    hard_deadline = time.monotonic() + deadline_s + 120
    while len(out) < clients and time.monotonic() < hard_deadline:
        with contextlib.suppress(Exception):
            out.append(results.get(timeout=1))
        if all(not p.is_alive() for p in procs) and results.empty() and len(out) < clients:
            time.sleep(0.5)
            if results.empty():
                break
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)
    if len(out) < clients:
        print(f"  ! {name}: only {len(out)} of {clients} client processes reported", flush=True)
    return out


def _merge(name: str, parts: list[dict[str, Any]]) -> PhaseResult:
    result = PhaseResult(name)
    if not parts:
        return result
    result.events = sum(p["ok_events"] for p in parts)
    result.requests = sum(p["ok_requests"] for p in parts)
    result.seconds = max(p["t_end"] for p in parts) - min(p["t_start"] for p in parts)
    for p in parts:
        for k, v in p["errors"].items():
            result.errors[k] = result.errors.get(k, 0) + v
        result.latencies.extend(p.get("latencies", []))
        result.client_cpu += p["cpu"]
        result.connects += p.get("connects", 0)
    return result


def batch_phase(
    name: str,
    port: int,
    bodies: list[bytes],
    counts: list[int],
    clients: int,
    master: int,
    timeout: float,
    database: str,
) -> PhaseResult:
    global _BODIES, _BODY_EVENTS
    _BODIES, _BODY_EVENTS = bodies, counts
    next_index = mp.get_context("fork").Value("q", 0)
    meter = CpuMeter(master, database)
    parts = _run_processes(name, _batch_client, (port, next_index), clients, timeout)
    result = _merge(name, parts)
    result.cpu = meter.stop(loadgen=result.client_cpu)
    result.disk = meter.disk
    _BODIES, _BODY_EVENTS = [], []
    return result


# --------------------------------------------------------------------------- baseline


def _baseline_client(
    dsn: str,
    method: str,
    table: str,
    next_index: Any,
    barrier: Any,
    deadline_s: float,
    results: Any,
) -> None:
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    ok_events = ok_requests = 0
    errors: dict[str, int] = {}
    cols = ", ".join(COLUMNS)
    width = len(COLUMNS)
    sql_by_n: dict[int, str] = {}
    with psycopg.connect(dsn, autocommit=False) as conn:
        backend = conn.info.backend_pid
        backend_cpu0 = cpu_seconds(backend)
        barrier.wait(timeout=60)
        t_start = time.monotonic()
        deadline = t_start + deadline_s
        t_end = t_start
        while time.monotonic() < deadline:
            with next_index.get_lock():
                i = next_index.value
                next_index.value += 1
            if i >= len(_BASELINE_BATCHES):
                break
            rows = _BASELINE_BATCHES[i]
            try:
                # RawCursor: PostgreSQL's own $n placeholders. With %s, psycopg
                # re-parses the 1,700-placeholder statement on every execute
                # (it only caches short queries), which costs ~40 µs per event
                # of client CPU and would make the baseline measure psycopg's
                # query parser rather than the database.
                with psycopg.RawCursor(conn) as cur:
                    if method == "insert":
                        sql = sql_by_n.get(len(rows))
                        if sql is None:
                            sql = sql_by_n[len(rows)] = (
                                f"INSERT INTO {table} ({cols}) VALUES "
                                + ", ".join(
                                    "("
                                    + ", ".join(f"${r * width + c + 1}" for c in range(width))
                                    + ")"
                                    for r in range(len(rows))
                                )
                                + " ON CONFLICT (source_id, message_id) DO NOTHING RETURNING id"
                            )
                        cur.execute(sql, [v for r in rows for v in r])
                        stored = len(cur.fetchall())
                    else:
                        with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                            for r in rows:
                                copy.write_row(r)
                        stored = len(rows)
                conn.commit()
            except psycopg.Error as exc:
                conn.rollback()
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            t_end = time.monotonic()
            ok_events += stored
            ok_requests += 1
        backend_cpu = cpu_seconds(backend) - backend_cpu0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    results.put(
        {
            "ok_requests": ok_requests,
            "ok_events": ok_events,
            "errors": errors,
            "t_start": t_start,
            "t_end": t_end,
            "cpu": cpu,
            "backend_cpu": backend_cpu,
        }
    )


def baseline_phase(
    name: str,
    dsn: str,
    method: str,
    table: str,
    batches: list[list[tuple[Any, ...]]],
    clients: int,
    timeout: float,
    database: str,
) -> PhaseResult:
    global _BASELINE_BATCHES
    _BASELINE_BATCHES = batches
    next_index = mp.get_context("fork").Value("q", 0)
    meter = CpuMeter(None, database)
    parts = _run_processes(
        name, _baseline_client, (dsn, method, table, next_index), clients, timeout
    )
    result = _merge(name, parts)
    result.cpu = meter.stop(
        extra_postgres=sum(p.get("backend_cpu", 0.0) for p in parts), loadgen=result.client_cpu
    )
    result.disk = meter.disk
    _BASELINE_BATCHES = []
    return result


# --------------------------------------------------------------------------- latency phase


def latency_phase(
    port: int,
    rate: float,
    duration: float,
    threads: int,
    master: int,
    seed: int,
    tag: str,
    database: str,
) -> tuple[PhaseResult, list[float]]:
    """Open loop: request i is due at t0 + i/rate, whatever happened to the others."""
    n = int(rate * duration)
    rng = random.Random(seed)
    now = datetime.now(UTC)
    bodies = []
    for i in range(n):
        event = make_event(rng, tag, i, now)
        del event["type"]  # /v1/track forces it, as analytics-node sends it
        bodies.append(orjson.dumps(event))
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    late_starts: list[float] = []
    by_second: dict[int, list[float]] = {}
    errors: dict[str, int] = {}
    ok = [0]
    t0 = time.monotonic() + 0.5
    hard_deadline = t0 + duration + 30

    def worker() -> None:
        client = Client(port, timeout=10)
        local_lat: list[float] = []
        local_late: list[float] = []
        local_sec: list[tuple[int, float]] = []
        local_err: dict[str, int] = {}
        local_ok = 0
        while True:
            with lock:
                i = next(counter)
            if i >= n:
                break
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            started = time.monotonic()
            if started > hard_deadline:
                local_err["not sent (time limit)"] = local_err.get("not sent (time limit)", 0) + 1
                continue
            local_late.append(started - due)
            try:
                status, data = client.post("/v1/track", bodies[i])
                _, error = accepted_events(status, data, 1)
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
                client.close()
            done = time.monotonic()
            local_lat.append(done - due)
            local_sec.append((int(i / rate), done - due))
            if error:
                local_err[error] = local_err.get(error, 0) + 1
            else:
                local_ok += 1
        client.close()
        with lock:
            latencies.extend(local_lat)
            late_starts.extend(local_late)
            for second, value in local_sec:
                by_second.setdefault(second, []).append(value)
            ok[0] += local_ok
            for k, v in local_err.items():
                errors[k] = errors.get(k, 0) + v

    # Once a second: how much CPU went to processes other than ours, so that a
    # latency spike can be told apart from someone else's burst of work.
    samples: list[tuple[float, float, float, tuple[int, int, int]]] = []
    stop = threading.Event()
    probe = CpuMeter(master, database)

    def sampler() -> None:
        while not stop.is_set():
            usage = resource.getrusage(resource.RUSAGE_SELF)
            ours = sum(sum(group.values()) for group in probe._sample().values())
            ours += usage.ru_utime + usage.ru_stime
            samples.append((time.monotonic() - t0, busy_cpu_seconds(), ours, disk_sample()))
            stop.wait(1.0)

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    meter = CpuMeter(master, database)
    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=max(1.0, hard_deadline + 15 - time.monotonic()))
    stop.set()
    watcher.join(timeout=5)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    result = PhaseResult("single /v1/track")
    result.client_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    result.cpu = meter.stop(loadgen=result.client_cpu)
    result.disk = meter.disk
    result.events = ok[0]
    result.requests = ok[0]
    result.seconds = duration
    result.errors = errors
    result.latencies = latencies
    result.windows = _worst_seconds(by_second, samples)
    return result, late_starts


def _worst_seconds(
    by_second: dict[int, list[float]],
    samples: list[tuple[float, float, float, tuple[int, int, int]]],
) -> list[str]:
    """The three seconds with the slowest requests, with the CPU others used then
    and how the database's disk was doing."""
    lines = []
    worst = sorted(by_second.items(), key=lambda kv: max(kv[1]), reverse=True)[:3]
    for second, values in sorted(worst):
        other = float("nan")
        disk = ""
        # samples: (seconds since t0, busy CPU, our CPU, disk); take those around it.
        around = [s for s in samples if second - 1.0 <= s[0] <= second + 2.0]
        if len(around) >= 2:
            (ta, ba, oa, da), (tb, bb, ob, db) = around[0], around[-1]
            other = max(0.0, (bb - ba) - (ob - oa)) / (tb - ta)
            disk = disk_note(da, db, tb - ta)
        lines.append(
            f"second {second:3d}: {len(values)} requests, max {max(values) * 1000:.0f} ms; "
            f"around then: other processes {other:.2f} cores" + (f", {disk}" if disk else "")
        )
    return lines


# --------------------------------------------------------------------------- setup


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def redis_flush() -> int | None:
    """FLUSHDB on the bench's Redis db; returns the Celery queue length it dropped."""
    try:
        import redis
    except ImportError:
        return None
    r = redis.Redis(host=HOST, port=6379, db=REDIS_DB, socket_timeout=5)
    try:
        queued = r.llen("celery")
        r.flushdb()
        return int(queued)
    finally:
        r.close()


def recreate_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(dsn: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("DJANGO_", "CDP_")) or key in ("DATABASE_URL", "CACHE_URL"):
            del env[key]
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "cdp.settings.production",
            "DATABASE_URL": dsn,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "CDP_PRIVACY_HASH_KEY": secrets.token_urlsafe(50),
            "CDP_SECRETS_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # Plain HTTP on loopback: no redirect to HTTPS.
            "SECURE_SSL_REDIRECT": "false",
            "STATIC_ROOT": str(STATIC_ROOT),
            "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "DEBUG": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def create_baseline_tables(dsn: str, tables: list[str]) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            # Same columns, defaults, identity, indexes (incl. the unique one on
            # (source_id, message_id)) and the same foreign key to the source.
            conn.execute(f"CREATE TABLE {table} (LIKE events_event INCLUDING ALL)")
            conn.execute(
                f"ALTER TABLE {table} ADD FOREIGN KEY (source_id) REFERENCES events_source (id) "
                "DEFERRABLE INITIALLY DEFERRED"
            )
        row = conn.execute(
            "SELECT id FROM events_source WHERE write_key_hash = %s",
            [hashlib.sha256(WRITE_KEY.encode()).hexdigest()],
        ).fetchone()
        assert row is not None
        return int(row[0])


def wait_for_quiet(max_wait: float, threshold: float = 0.15, disk_threshold: float = 0.2) -> str:
    """Before a timed phase: wait (bounded) until the machine is idle apart from us.

    Other work on the machine (a test suite, say) steals CPU from the server and
    PostgreSQL, and the disk stays busy for a while after a bulk load (the WAL
    flushes of every COMMIT then take 100 ms or more); waiting for both to pass
    makes runs comparable. Returns a note.
    """
    deadline = time.monotonic() + max_wait
    waited = 0.0
    while True:
        b0, d0, t0 = busy_cpu_seconds(), disk_sample(), time.monotonic()
        time.sleep(1.0)
        seconds = time.monotonic() - t0
        load = (busy_cpu_seconds() - b0) / seconds
        disk = (disk_sample()[0] - d0[0]) / 1000 / seconds
        state = f"{load:.2f} cores busy, disk {disk:.0%} busy"
        if load < threshold and disk < disk_threshold:
            return f"machine idle ({state})" + (f" after waiting {waited:.0f}s" if waited else "")
        if time.monotonic() >= deadline:
            return f"! machine still busy ({state}) after {waited:.0f}s; going ahead"
        waited += 1.0


def checkpoint(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def count_rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0


class Gunicorn:
    def __init__(self, args: argparse.Namespace, env: dict[str, str], logdir: Path) -> None:
        self.port = free_port()
        self.log = logdir / "gunicorn.log"
        cmd = [
            str(VENV_BIN / "gunicorn"),
            "cdp.wsgi:application",
            # Production's config: the access log on, redacted (cdp/gunicorn.py).
            "-c",
            str(ROOT / "cdp" / "gunicorn.py"),
            # One control socket path per user: another gunicorn must not share it.
            "--no-control-socket",
            "--bind",
            f"{HOST}:{self.port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            args.worker_class,
            "--threads",
            str(args.threads),
            "--keep-alive",
            str(args.keep_alive),
            "--backlog",
            "2048",
            "--timeout",
            "60",
            "--graceful-timeout",
            "10",
            "--error-logfile",
            str(self.log),
            "--log-level",
            "warning",
        ]
        if args.preload:
            cmd.append("--preload")
        self.cmd = cmd
        self.logfh = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=self.logfh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def workers(self) -> list[int]:
        return children_of(self.pid)

    def wait_healthy(self, expected_workers: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"gunicorn exited ({self.proc.returncode}); see {self.log}:\n"
                    + self.log.read_text()[-3000:]
                )
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                body = response.read()
                conn.close()
                if response.status == 200 and len(self.workers()) >= expected_workers:
                    return
                last = f"{response.status} {body[:200]!r}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise SystemExit(f"/healthz never answered 200 (last: {last}); see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # our own session only
                self.proc.wait(timeout=10)
        self.logfh.close()


def warm_up(port: int, bodies: list[bytes], singles: int, connections: int) -> int:
    """Concurrent requests, so that every worker (and every thread's database
    connection) has served both routes before anything is measured: the first
    request of a worker loads code and connects to PostgreSQL and Redis, which
    takes a few hundred milliseconds."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    jobs: list[tuple[str, bytes, int]] = [("/v1/batch", body, 0) for body in bodies]
    jobs += [
        ("/v1/track", orjson.dumps(make_event(rng, "warm-single", i, now)), 1)
        for i in range(singles)
    ]
    lock = threading.Lock()
    errors = [0]

    def worker() -> None:
        client = Client(port)
        while True:
            with lock:
                if not jobs:
                    break
                path, body, sent = jobs.pop()
            try:
                status, data = client.post(path, body)
                failed = accepted_events(status, data, sent)[1] is not None
            except (OSError, http.client.HTTPException):
                failed = True
                client.close()
            if failed:
                with lock:
                    errors[0] += 1
        client.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    return errors[0]


# --------------------------------------------------------------------------- report


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def cpu_line(result: PhaseResult) -> str:
    c = result.cpu
    wall = c.get("wall", 0.0) or 1.0
    parts = []
    for label in ("gunicorn", "postgres", "redis", "loadgen", "other"):
        value = c.get(label, 0.0)
        per_event = f" {value / result.events * 1e6:.0f}µs/ev" if result.events else ""
        parts.append(f"{label} {value:.1f}s={value / wall:.2f} cores{per_event}")
    line = f"    CPU over {wall:.1f}s: " + "; ".join(parts)
    if result.disk:
        line += f"\n    PostgreSQL's disk: {result.disk}"
    if c.get("other", 0.0) / wall > 0.15:
        line += (
            f"\n    ! other processes used {c['other'] / wall:.2f} of the "
            f"{os.cpu_count()} cores meanwhile: this phase's numbers are depressed"
        )
    return line


def print_phase(result: PhaseResult) -> None:
    err = ", ".join(f"{k}: {v}" for k, v in sorted(result.errors.items())) or "none"
    print(
        f"  {result.name}: {result.events} events in {result.seconds:.2f} s = "
        f"{result.rate:,.0f} events/s ({result.requests} ok requests, errors: {err})"
    )
    if result.latencies and "track" not in result.name:
        lat = result.latencies
        print(
            f"    request latency ms: p50 {pct(lat, 50) * 1000:.1f}  p99 {pct(lat, 99) * 1000:.1f}"
            f"  max {max(lat) * 1000:.1f}; connections opened: {result.connects}"
        )
    print(cpu_line(result), flush=True)


def print_rss(label: str, workers: list[int], table: list[tuple[str, dict[int, int]]]) -> None:
    snapshot = {pid: rss_kib(pid) for pid in workers}
    table.append((label, snapshot))
    cells = "  ".join(f"{pid}:{kib / 1024:6.1f}" for pid, kib in sorted(snapshot.items()))
    print(f"  RSS MiB [{label}] {cells}", flush=True)


# --------------------------------------------------------------------------- main


def main() -> int:
    cores = os.cpu_count() or 2
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000, help="events per batch round")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--clients",
        type=int,
        default=6,
        help="concurrent client processes (batch phase and baseline)",
    )
    parser.add_argument("--workers", type=int, default=2 * cores, help="gunicorn workers")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads per worker (>1 makes gunicorn use gthread)"
    )
    parser.add_argument("--keep-alive", type=int, default=5, help="gunicorn --keep-alive seconds")
    parser.add_argument("--preload", action="store_true", help="gunicorn --preload")
    parser.add_argument("--rate", type=float, default=200.0, help="single /v1/track requests/s")
    parser.add_argument("--duration", type=float, default=20.0, help="latency phase seconds")
    parser.add_argument(
        "--latency-threads",
        type=int,
        default=16,
        help="client threads (connections) for the open-loop latency phase",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        choices=(1, 2, 3),
        help="batch rounds (the 2nd/3rd show whether worker memory grows)",
    )
    parser.add_argument(
        "--phase-timeout",
        type=float,
        default=300.0,
        help="give up on a load phase after this many seconds",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each timed phase, wait up to this many seconds for other "
        "processes to leave the CPUs idle",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--database", default="cdp_bench")
    parser.add_argument("--keep-database", action="store_true", help="do not drop it at the end")
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.workers <= 32 and 1 <= args.threads <= 64):
        parser.error("clients 1-64, workers 1-32, threads 1-64")
    if not args.database.replace("_", "").isalnum():
        parser.error("--database: letters, digits and underscores only")

    dsn = f"postgresql://postgres@127.0.0.1:5432/{args.database}"
    env = server_env(dsn)
    started = time.monotonic()
    worker_desc = f"{args.workers} x {args.worker_class}" + (
        f" x {args.threads} threads" if args.threads > 1 else ""
    )
    print(
        f"cdp ingestion benchmark: {args.events:,} events in batches of {args.batch_size}, "
        f"{args.clients} clients; gunicorn {worker_desc}; {cores} CPUs shared by server, "
        "PostgreSQL and load generator"
    )
    print(
        "Processing is only queued (Celery broker redis db 15, no Celery worker running): "
        "this measures ingestion, not identity resolution.",
        flush=True,
    )

    logdir = Path(tempfile.mkdtemp(prefix="cdp-bench-"))
    server: Gunicorn | None = None
    rss_table: list[tuple[str, dict[int, int]]] = []
    results: dict[str, Any] = {}
    try:
        print(f"\n[setup] database {args.database}, migrate, source, baseline tables", flush=True)
        recreate_database(args.database)
        manage(env, "migrate", "--noinput", "-v", "0")
        # Production settings serve hashed static files and refuse to start without.
        manage(env, "collectstatic", "--noinput", "-v", "0")
        manage(env, "create_source", "bench", "--write-key", WRITE_KEY)
        global DISK_STAT
        DISK_STAT = find_disk_stat(dsn)
        source_id = create_baseline_tables(dsn, ["bench_baseline_insert", "bench_baseline_copy"])
        dropped = redis_flush()
        print(f"  redis db {REDIS_DB} flushed (held {dropped} queued tasks)")

        t = time.monotonic()
        bodies, counts, rows = build_batches(
            args.events, args.batch_size, "r1", None if args.skip_baseline else source_id, 1
        )
        sizes = [len(b) for b in bodies]
        print(
            f"  built {len(bodies)} bodies in {time.monotonic() - t:.1f}s: "
            f"{statistics.mean(sizes) / 1024:.1f} KiB per request, "
            f"{sum(sizes) / sum(counts):.0f} bytes per event",
            flush=True,
        )

        if not args.skip_baseline:
            print(
                "\n[baseline] psycopg straight into equivalent tables, "
                f"{args.clients} concurrent clients",
                flush=True,
            )
            for method, table, label in (
                (
                    "insert",
                    "bench_baseline_insert",
                    f"baseline INSERT ... ON CONFLICT DO NOTHING, {args.batch_size} rows + COMMIT",
                ),
                ("copy", "bench_baseline_copy", f"baseline COPY, {args.batch_size} rows + COMMIT"),
            ):
                checkpoint(dsn)
                print(f"  {wait_for_quiet(args.quiet_wait)}", flush=True)
                res = baseline_phase(
                    label, dsn, method, table, rows, args.clients, args.phase_timeout, args.database
                )
                print_phase(res)
                results[method] = res
                stored = count_rows(dsn, table)
                if stored != res.events:
                    print(f"  ! {table} holds {stored} rows, clients counted {res.events}")
        del rows

        server = Gunicorn(args, env, logdir)
        print("\n[server] gunicorn " + " ".join(server.cmd[1:]), flush=True)
        server.wait_healthy(args.workers)
        workers = server.workers()
        print(f"  master {server.pid}, workers {workers}; /healthz 200", flush=True)
        print_rss("idle after start", workers, rss_table)
        slots = args.workers * args.threads
        warm_bodies, _, _ = build_batches(
            args.batch_size * 4 * slots, args.batch_size, "warm", None, 99
        )
        errors = warm_up(server.port, warm_bodies, 10 * slots, min(32, 2 * slots))
        print(
            f"  warm-up: {len(warm_bodies)} batches + {10 * slots} singles from "
            f"{min(32, 2 * slots)} connections, {errors} errors"
        )
        print_rss("after warm-up", workers, rss_table)

        for rnd in range(1, args.rounds + 1):
            if rnd > 1:
                bodies, counts, _ = build_batches(
                    args.events, args.batch_size, f"r{rnd}", None, rnd
                )
            checkpoint(dsn)
            print(f"\n[round {rnd}] {wait_for_quiet(args.quiet_wait)}")
            print(
                f"[round {rnd}] /v1/batch, {len(bodies)} requests of {args.batch_size} events, "
                f"{args.clients} clients",
                flush=True,
            )
            res = batch_phase(
                f"/v1/batch round {rnd}",
                server.port,
                bodies,
                counts,
                args.clients,
                server.pid,
                args.phase_timeout,
                args.database,
            )
            print_phase(res)
            results[f"round{rnd}"] = res
            del bodies, counts
            if rnd == 1:
                checkpoint(dsn)
                print(f"\n[latency] {wait_for_quiet(args.quiet_wait)}")
                print(
                    f"[latency] single /v1/track, open loop at {args.rate:g}/s for "
                    f"{args.duration:g}s, {args.latency_threads} connections",
                    flush=True,
                )
                lat_res, late = latency_phase(
                    server.port,
                    args.rate,
                    args.duration,
                    args.latency_threads,
                    server.pid,
                    11,
                    "lat",
                    args.database,
                )
                results["latency"] = lat_res
                results["late"] = late
                lat = lat_res.latencies
                err = ", ".join(f"{k}: {v}" for k, v in sorted(lat_res.errors.items())) or "none"
                print(f"  {lat_res.events} ok of {len(lat)} sent, errors: {err}")
                print(
                    f"  latency ms (from scheduled time): p50 {pct(lat, 50) * 1000:.1f}  "
                    f"p90 {pct(lat, 90) * 1000:.1f}  p99 {pct(lat, 99) * 1000:.1f}  "
                    f"max {max(lat, default=0) * 1000:.1f}; client send lag p99 "
                    f"{pct(late, 99) * 1000:.1f}"
                )
                print(cpu_line(lat_res))
                for line in lat_res.windows:
                    print(f"    slowest {line}")
                sys.stdout.flush()
            print_rss(f"after round {rnd}", workers, rss_table)
            if server.workers() != workers:
                print(f"  ! worker set changed: {workers} -> {server.workers()}")

        total_rows = count_rows(dsn, "events_event")
        queued = redis_flush()
        print(
            f"\n  events_event holds {total_rows:,} rows; {queued} processing tasks were "
            f"queued in redis db {REDIS_DB} (flushed, not processed)"
        )
    finally:
        if server is not None:
            server.stop()
            tail = server.log.read_text(errors="replace").strip().splitlines()
            noisy = [line for line in tail if "ERROR" in line or "Traceback" in line]
            if noisy:
                print(f"  gunicorn log has {len(noisy)} error lines, e.g. {noisy[0][:200]}")
        with contextlib.suppress(Exception):
            redis_flush()
        if not args.keep_database:
            with contextlib.suppress(Exception):
                drop_database(args.database)
        shutil.rmtree(logdir, ignore_errors=True)

    # ------------------------------------------------------------------ summary table
    r1: PhaseResult = results["round1"]
    lat_res: PhaseResult = results["latency"]
    ins: PhaseResult | None = results.get("insert")
    cop: PhaseResult | None = results.get("copy")
    lat = lat_res.latencies
    ratio = r1.rate / ins.rate if ins and ins.rate else float("nan")
    p99 = pct(lat, 99)
    print("\n" + "=" * 78)
    print(f"{'metric':44} {'value':>14}  target")
    print("-" * 78)

    def row(name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        mark = "" if ok is None else ("  PASS" if ok else "  FAIL")
        print(f"{name:44} {value:>14}  {target}{mark}")

    row("/v1/batch events/s (round 1)", f"{r1.rate:,.0f}", ">= 10,000", r1.rate >= 10_000)
    for key in ("round2", "round3"):
        if key in results:
            row(f"/v1/batch events/s ({key[:5]} {key[5:]})", f"{results[key].rate:,.0f}")
    if ins:
        row("baseline INSERT+COMMIT per batch events/s", f"{ins.rate:,.0f}")
        row("ratio /v1/batch : baseline INSERT", f"{ratio:.2f}", ">= 0.25", ratio >= 0.25)
    if cop:
        row("baseline COPY+COMMIT per batch events/s", f"{cop.rate:,.0f}")
        row("ratio /v1/batch : baseline COPY", f"{r1.rate / cop.rate if cop.rate else 0:.2f}")
    row(f"/v1/track p50 ms @ {args.rate:g}/s", f"{pct(lat, 50) * 1000:.1f}")
    row(f"/v1/track p90 ms @ {args.rate:g}/s", f"{pct(lat, 90) * 1000:.1f}")
    row(f"/v1/track p99 ms @ {args.rate:g}/s", f"{p99 * 1000:.1f}", "<= 25", p99 <= 0.025)
    row(f"/v1/track max ms @ {args.rate:g}/s", f"{max(lat, default=0) * 1000:.1f}")
    errors_total = sum(
        sum(r.errors.values()) for r in results.values() if isinstance(r, PhaseResult)
    )
    row("failed requests (all phases)", f"{errors_total}", "0", errors_total == 0)
    first = dict(rss_table[1][1]) if len(rss_table) > 1 else {}
    last = dict(rss_table[-1][1])
    after1 = dict(next((s for label, s in rss_table if label == "after round 1"), last))
    growth_total = max((last[p] - first.get(p, last[p]) for p in last), default=0) / 1024
    growth_late = max((last[p] - after1.get(p, last[p]) for p in last), default=0) / 1024
    print("-" * 78)
    print("gunicorn worker RSS (MiB, VmRSS of each worker):")
    pids = sorted(last)
    print(f"  {'':20}" + "".join(f"{p:>10}" for p in pids))
    for label, snap in rss_table:
        print(f"  {label:20}" + "".join(f"{snap.get(p, 0) / 1024:10.1f}" for p in pids))
    row("max worker RSS growth warm-up -> end (MiB)", f"{growth_total:.1f}")
    if args.rounds > 1:
        row(
            "max worker RSS growth over round 2+ (MiB)",
            f"{growth_late:.1f}",
            "~0 (< 2)",
            growth_late < 2.0,
        )
    print("=" * 78)
    print(f"total run time {time.monotonic() - started:.0f}s")
    return 0


def _terminate(signum: int, frame: Any) -> None:
    # Turn SIGTERM/SIGHUP into SystemExit so that the finally blocks stop gunicorn.
    raise SystemExit(f"stopped by signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    sys.exit(main())
