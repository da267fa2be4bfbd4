#!/usr/bin/env python
"""Fault-injection benchmark: nothing answered with 200 may be lost or duplicated.

What it does, in one bounded run (see bench/README.md, "faults.py"):

1. Starts private services in a temporary directory, never the machine's shared
   ones: a PostgreSQL cluster of its own (initdb, as the ``postgres`` OS user when
   run as root; 127.0.0.1:``--pg-port``, trust auth) and a redis-server of its own
   (127.0.0.1:``--redis-port``, no persistence). Migrates a database, collects the
   static files and creates a source with a fixed write key.
2. Runs the product as production does: gunicorn (``cdp.wsgi -c cdp/gunicorn.py``,
   gthread workers) with ``cdp.settings.production``, a prefork Celery worker and
   Celery beat (whose schedule runs the pending-event sweep).
3. Posts ``--events`` events as ``/v1/batch`` requests from ``--clients`` client
   processes, paced so that the load spans every fault. Clients retry as the
   Segment SDKs do: on a connection error, a timeout, a 429 or a 5xx they send the
   same body again (same messageIds) after a backoff, honouring Retry-After, for up
   to ``--retry-budget-seconds`` per batch.
4. Meanwhile, one after the other: restarts PostgreSQL; takes the broker away for
   ``--broker-outage-seconds``; SIGKILLs a gunicorn worker that is serving a
   request; SIGKILLs a Celery pool process that is running a task.
5. Waits until every stored event is processed (or ``--catch-up-timeout``), then
   compares what the clients were told with what the database holds and prints
   answered, stored, duplicated, lost and processed counts and the catch-up time.
   Exits 1 if anything answered was lost, anything was stored twice, anything
   stayed unprocessed, or a client had to give up a batch.

Everything is stopped and removed at the end, also on errors and Ctrl-C.
Only 127.0.0.1 is contacted. Not run in CI: it kills and restarts services.

    .venv/bin/python bench/faults.py            # about 4 minutes
    .venv/bin/python bench/faults.py --broker-outage-seconds 10 --events 20000  # smoke run
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import multiprocessing as mp
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
DATABASE = "cdp_faults"
SOURCE_NAME = "faults"
WRITE_KEY = "faults_bench_write_key_0123456789"
FAULTS = ("postgres", "broker", "gunicorn", "celery")

T0 = time.monotonic()


def log(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
    print(f"[{time.monotonic() - T0:7.1f}s {stamp}] {message}", flush=True)


# --------------------------------------------------------------------------- /proc


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            # The command name may hold spaces and parentheses: split after the last ")".
            if stat and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return -1
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def running_threads(pid: int) -> int:
    """Threads of the process on a CPU or waiting for one right now (state R)."""
    count = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            stat = _read(f"/proc/{pid}/task/{tid}/stat")
            if stat and stat.rsplit(")", 1)[1].split()[0] == "R":
                count += 1
    return count


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers bind: connections of a previous run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- services


class PrivatePostgres:
    """A throw-away cluster in ``root``. initdb and postgres refuse to run as root,
    so as root they run as the ``postgres`` OS user, who then owns ``root``."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = port
        self.bin = self._bindir()
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
            self.as_owner = ["runuser", "-u", "postgres", "--"]

    @staticmethod
    def _bindir() -> Path:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent)
        if not found:
            raise SystemExit("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        return found[-1].parent

    def _run(self, *args: str, timeout: float = 120) -> None:
        proc = subprocess.run(
            [*self.as_owner, str(self.bin / args[0]), *args[1:]],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {proc.stdout}{proc.stderr}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")  # fmt: skip
        with open(self.data / "postgresql.conf", "a") as fh:
            # Only 127.0.0.1, our own socket directory (never /var/run/postgresql,
            # the shared server's). fsync stays on: a restart must be a real one.
            fh.write(
                f"\nlisten_addresses = '{HOST}'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 60\n"
                "logging_collector = off\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"


class Process:
    """A service we started, in a session of its own (so that stopping it can never
    reach anyone else's processes), its output in a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.log = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._logfh: Any = None

    def start(self) -> None:
        self._logfh = open(self.log, "ab")  # noqa: SIM115 (kept open while it runs)
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=ROOT,
            env=self.env,
            stdout=self._logfh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # its own session only
                self.proc.wait(timeout=10)
        if self._logfh is not None:
            self._logfh.close()
            self._logfh = None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class PrivateRedis(Process):
    def __init__(self, port: int, workdir: Path, logdir: Path) -> None:
        cmd = ["redis-server", "--bind", HOST, "--port", str(port), "--save", "",
               "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no"]  # fmt: skip
        super().__init__("redis", cmd, dict(os.environ), logdir)
        self.port = port

    def start(self) -> None:
        super().start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not answer PING")

    def queued(self) -> int | None:
        """Length of Celery's default queue, or None if redis is away."""
        try:
            with socket.create_connection((HOST, self.port), 1) as s:
                s.sendall(b"LLEN celery\r\n")
                reply = s.recv(64)
            return int(reply[1:].split(b"\r\n")[0]) if reply.startswith(b":") else None
        except (OSError, ValueError):
            return None


def server_env(dsn: str, redis_port: int, static_root: Path, sweep_after: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CDP_", "CELERY_", "SECURE_"))
        and k not in ("DATABASE_URL", "CACHE_URL", "SECRET_KEY", "ALLOWED_HOSTS", "STATIC_ROOT")
    }
    # Every setting production may insist on is given explicitly, so that a stricter
    # production.py (refusing insecure values at start) still starts.
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "cdp.settings.production",
            "DATABASE_URL": dsn,
            "CELERY_BROKER_URL": f"redis://{HOST}:{redis_port}/0",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "CDP_PRIVACY_HASH_KEY": secrets.token_urlsafe(48),
            "CDP_SECRETS_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "SECURE_HSTS_SECONDS": "0",
            "STATIC_ROOT": str(static_root),
            "DEBUG": "false",
            # Events whose task was lost are swept once they are this old (the
            # default, 60 s, would only stretch the catch-up of this short run).
            "CDP_PENDING_SWEEP_AFTER_SECONDS": str(sweep_after),
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
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def http_ok(port: int, path: str = "/healthz") -> bool:
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=3)
        conn.request("GET", path)
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except (OSError, http.client.HTTPException):
        return False


# --------------------------------------------------------------------------- events

_EVENTS = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed")


def build_bodies(n_events: int, batch_size: int, run: str, seed: int) -> list[bytes]:
    """analytics.js-like calls with unique messageIds. A pool of users and devices,
    so that processing resolves, creates and merges profiles concurrently (as real
    traffic does) rather than minting one profile per event. ``bench_seq`` is the
    event's own number: it tells a duplicate stored under another id."""
    rng = random.Random(seed)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    bodies = []
    for start in range(0, n_events, batch_size):
        batch = []
        for seq in range(start, min(start + batch_size, n_events)):
            device = rng.randrange(20_000)
            event: dict[str, Any] = {
                "messageId": f"faults-{run}-{seq:08d}",
                "anonymousId": str(uuid.UUID(int=device + 1)),
                "timestamp": now,
                "context": {"library": {"name": "analytics.js", "version": "4.1.0"}},
            }
            if rng.random() < 0.4:
                event["userId"] = f"user-{device % 5_000}"
            if rng.random() < 0.1:
                event["type"] = "identify"
                event["traits"] = {"plan": rng.choice(("free", "pro")), "bench_seq": seq}
            else:
                event["type"] = "track"
                event["event"] = rng.choice(_EVENTS)
                event["properties"] = {"price": round(rng.uniform(3, 300), 2), "bench_seq": seq}
            batch.append(event)
        bodies.append(orjson.dumps({"batch": batch, "sentAt": now}))
    return bodies


# --------------------------------------------------------------------------- clients

# Shared counters (an mp.Array), by index.
C_ANSWERED_EVENTS, C_ANSWERED, C_ATTEMPTS, C_RETRIES = 0, 1, 2, 3
C_REFUSED, C_CUT, C_TIMEOUT, C_503, C_5XX, C_429 = 4, 5, 6, 7, 8, 9
C_GAVE_UP, C_IN_FLIGHT, C_RETRYING = 10, 11, 12
N_COUNTERS = 13
CAUSES = {
    "connection refused": C_REFUSED,
    "connection dropped": C_CUT,
    "timeout": C_TIMEOUT,
    "HTTP 503": C_503,
    "HTTP 5xx other": C_5XX,
    "HTTP 429": C_429,
}

# Filled in the parent before the clients are forked (shared copy-on-write).
_BODIES: list[bytes] = []


@dataclass
class ClientPlan:
    port: int
    start_at: float  # time.time() of the first batch, the same in every client
    interval: float  # seconds between two batches, over all clients
    clients: int
    request_timeout: float
    retry_budget: float


class Sdk:
    """What an SDK does with one batch: send it, and on a failure that may pass
    (connection refused or dropped, timeout, 429, 5xx) send the same body again
    after an exponential backoff with jitter, or after Retry-After if longer."""

    def __init__(self, plan: ClientPlan, counters: Any, stop: Any) -> None:
        self.plan = plan
        self.counters = counters
        self.stop = stop
        self.conn: http.client.HTTPConnection | None = None
        auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": f"Basic {auth}",
            "User-Agent": "cdp-faults-bench/1 (SDK-style retries)",
        }

    def count(self, index: int, delta: int = 1) -> None:
        with self.counters.get_lock():
            self.counters[index] += delta

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def attempt(self, body: bytes) -> tuple[str, float]:
        """One POST: ("ok" | "fatal: ..." | a cause of CAUSES, Retry-After seconds)."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    HOST, self.plan.port, timeout=self.plan.request_timeout
                )
            self.conn.request("POST", "/v1/batch", body, self.headers)
            response = self.conn.getresponse()
            data = response.read()
            if response.will_close:
                self.close()
        except ConnectionRefusedError:
            self.close()
            return "connection refused", 0.0
        except TimeoutError:
            self.close()
            return "timeout", 0.0
        except (OSError, http.client.HTTPException):
            # Reset, broken pipe, closed without an answer, a truncated answer.
            self.close()
            return "connection dropped", 0.0
        status = response.status
        retry_after = 0.0
        with contextlib.suppress(TypeError, ValueError):
            retry_after = float(response.headers.get("Retry-After"))
        if status == 200:
            try:
                answer = orjson.loads(data)
            except orjson.JSONDecodeError:
                return "fatal: 200 without JSON", 0.0
            if not isinstance(answer, dict) or answer.get("success") is not True:
                return "fatal: 200 without success", 0.0
            if answer.get("rejected"):
                return "fatal: events rejected", 0.0
            return "ok", 0.0
        if status == 503:
            return "HTTP 503", retry_after
        if status == 429:
            return "HTTP 429", retry_after
        if status >= 500:
            return "HTTP 5xx other", retry_after
        return f"fatal: HTTP {status}", 0.0

    def send(self, body: bytes, n_events: int) -> tuple[str, int, float]:
        """(outcome, attempts, time answered) for one batch, retried until answered,
        refused for good, or the retry budget is spent."""
        first = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            self.count(C_ATTEMPTS)
            self.count(C_IN_FLIGHT)
            outcome, retry_after = self.attempt(body)
            self.count(C_IN_FLIGHT, -1)
            if outcome == "ok":
                self.count(C_ANSWERED)
                self.count(C_ANSWERED_EVENTS, n_events)
                return outcome, attempts, time.time()
            if outcome.startswith("fatal"):
                return outcome, attempts, 0.0
            self.count(CAUSES[outcome])
            # analytics-python's backoff: exponential from a fraction of a second,
            # capped, with full jitter; a server's Retry-After wins when longer.
            delay = min(10.0, 0.25 * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
            delay = max(delay, min(retry_after, 60.0))
            if time.monotonic() + delay - first > self.plan.retry_budget or self.stop.is_set():
                return f"gave up after {outcome}", attempts, 0.0
            self.count(C_RETRIES)
            self.count(C_RETRYING)
            time.sleep(delay)
            self.count(C_RETRYING, -1)


def client_main(k: int, plan: ClientPlan, counters: Any, stop: Any, results: Any) -> None:
    """Client k sends batches k, k + clients, ... each at its due time (or at once if
    late: an SDK flushes what queued up during an outage), one at a time."""
    random.seed(os.getpid())
    sdk = Sdk(plan, counters, stop)
    report: dict[str, Any] = {"answered": [], "failed": {}, "attempts": 0, "retried": 0}
    for i in range(k, len(_BODIES), plan.clients):
        if stop.is_set():
            break
        delay = plan.start_at + i * plan.interval - time.time()
        if delay > 0:
            time.sleep(delay)
        n_events = _BODIES[i].count(b'"messageId"')
        outcome, attempts, answered_at = sdk.send(_BODIES[i], n_events)
        report["attempts"] += attempts
        report["retried"] += attempts > 1
        if outcome == "ok":
            report["answered"].append((i, answered_at))
        else:
            report["failed"][i] = outcome
            sdk.count(C_GAVE_UP)
    sdk.close()
    results.put(report)


# --------------------------------------------------------------------------- database


def db_counts(dsn: str, source_id: int) -> tuple[int, int] | None:
    """(stored rows, unprocessed rows) of the source, or None if the database is away."""
    try:
        with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE processed_at IS NULL) "
                "FROM events_event WHERE source_id = %s",
                [source_id],
            ).fetchone()
    except psycopg.Error:
        return None
    assert row is not None
    return int(row[0]), int(row[1])


@dataclass
class Stored:
    rows: int = 0
    message_ids: set[str] = field(default_factory=set)
    seqs: dict[int, int] = field(default_factory=dict)  # bench_seq -> rows
    processed: int = 0
    without_profile: int = 0


def db_stored(dsn: str, source_id: int) -> Stored:
    stored = Stored()
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT message_id, coalesce(properties->>'bench_seq', traits->>'bench_seq'), "
            "processed_at IS NOT NULL, profile_id IS NULL FROM events_event "
            "WHERE source_id = %s",
            [source_id],
        )
        for message_id, seq, processed, no_profile in cur:
            stored.rows += 1
            stored.message_ids.add(message_id)
            if seq is not None:
                stored.seqs[int(seq)] = stored.seqs.get(int(seq), 0) + 1
            stored.processed += bool(processed)
            stored.without_profile += bool(processed and no_profile)
    return stored


# --------------------------------------------------------------------------- faults


@dataclass
class Run:
    args: argparse.Namespace
    pg: PrivatePostgres
    redis: PrivateRedis
    gunicorn: Process
    worker: Process
    beat: Process
    counters: Any
    notes: list[str] = field(default_factory=list)
    peak_unprocessed: int = 0

    def snapshot(self) -> list[int]:
        with self.counters.get_lock():
            return list(self.counters[:])

    def note(self, text: str) -> None:
        log(text)
        self.notes.append(text)


def pick_busy(pids: list[int], in_flight: Callable[[], bool], timeout: float) -> tuple[int, bool]:
    """A process of ``pids`` caught working: a thread of it running (state R), or its
    CPU time growing, while a request is in flight. Falls back to the first after
    ``timeout`` (and says so)."""
    deadline = time.monotonic() + timeout
    last = {pid: cpu_ticks(pid) for pid in pids}
    while time.monotonic() < deadline:
        time.sleep(0.005)
        if not in_flight():
            continue
        for pid in pids:
            ticks = cpu_ticks(pid)
            if running_threads(pid) or ticks > last[pid] >= 0:
                return pid, True
            last[pid] = ticks
    return pids[0], False


def fault_postgres(run: Run) -> None:
    down = run.args.pg_down_seconds
    run.note(f"(a) PostgreSQL: stop -m fast (backends cut mid-transaction), down {down:g} s")
    run.pg.stop("fast")
    time.sleep(down)
    run.pg.start()
    run.note("(a) PostgreSQL: started again, accepting connections")


def fault_broker(run: Run) -> None:
    outage = run.args.broker_outage_seconds
    queued = run.redis.queued()
    run.note(f"(b) broker: redis-server stopped for {outage:g} s ({queued} tasks queued go too)")
    run.redis.stop()
    time.sleep(outage)
    run.redis.start()
    run.note("(b) broker: redis-server back, empty (no persistence)")


def fault_gunicorn(run: Run) -> None:
    workers = children_of(run.gunicorn.pid)
    if not workers:
        raise RuntimeError("gunicorn has no workers")
    pid, busy = pick_busy(workers, lambda: run.counters[C_IN_FLIGHT] > 0, timeout=20)
    before = run.snapshot()
    os.kill(pid, signal.SIGKILL)
    run.note(
        f"(c) gunicorn: SIGKILL worker {pid} of {workers} "
        + ("while it was serving a request" if busy else "(no request seen in flight in 20 s)")
    )
    wait_for(
        "gunicorn to replace its worker",
        lambda: len([p for p in children_of(run.gunicorn.pid) if p != pid]) >= len(workers),
        30,
    )
    time.sleep(2)
    cut = run.snapshot()[C_CUT] - before[C_CUT]
    new = [p for p in children_of(run.gunicorn.pid) if p not in workers]
    run.note(f"(c) gunicorn: master started worker {new}; {cut} requests dropped by the kill")


def fault_celery(run: Run) -> None:
    pool = children_of(run.worker.pid)
    if not pool:
        raise RuntimeError("the Celery worker has no pool processes")
    # A pool process waiting for its next task sleeps on a pipe; one running a task
    # burns CPU (or waits on PostgreSQL between bursts of it).
    pid, busy = pick_busy(pool, lambda: True, timeout=30)
    lost_before = run.worker.log_text().count("raised error: WorkerLostError")
    os.kill(pid, signal.SIGKILL)
    run.note(
        f"(d) celery: SIGKILL pool process {pid} of {pool} "
        + ("while it was running a task" if busy else "(none seen busy in 30 s)")
    )
    wait_for(
        "Celery to replace its pool process",
        lambda: len([p for p in children_of(run.worker.pid) if p != pid]) >= len(pool),
        30,
    )
    time.sleep(2)
    lost = run.worker.log_text().count("raised error: WorkerLostError") - lost_before
    if lost:
        run.note(f"(d) celery: pool process replaced; {lost} task(s) lost with it (WorkerLost)")
    else:
        run.note("(d) celery: pool process replaced; no task was lost with it (between tasks)")


FAULT_STEPS: dict[str, Callable[[Run], None]] = {
    "postgres": fault_postgres,
    "broker": fault_broker,
    "gunicorn": fault_gunicorn,
    "celery": fault_celery,
}


def planned_seconds(name: str, args: argparse.Namespace) -> float:
    """How long a fault takes, to pace the load so that it spans them all."""
    return {
        "postgres": args.pg_down_seconds + 3,
        "broker": args.broker_outage_seconds + 2,
        "gunicorn": 5,
        "celery": 5,
    }[name]


# --------------------------------------------------------------------------- main


def cause_deltas(a: list[int], b: list[int]) -> str:
    parts = [f"{name} {b[i] - a[i]}" for name, i in CAUSES.items() if b[i] - a[i]]
    return ", ".join(parts) or "no failed attempts"


def progress(run: Run, dsn: str, source_id: int, total: int, stop: threading.Event) -> None:
    while not stop.wait(10):
        c = run.snapshot()
        counts = db_counts(dsn, source_id)
        if counts:
            run.peak_unprocessed = max(run.peak_unprocessed, counts[1])
        db = f"stored {counts[0]:,}, unprocessed {counts[1]:,}" if counts else "database away"
        queued = run.redis.queued()
        log(
            f"   load: {c[C_ANSWERED_EVENTS]:,}/{total:,} events answered, "
            f"{c[C_RETRYING]} batches waiting to retry; {db}; "
            f"broker queue {'away' if queued is None else queued}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--events", type=int, default=30_000, help="events in the load (at least 20,000 for "
        "the issue's target)")  # fmt: skip
    add("--batch-size", type=int, default=50, help="events per /v1/batch request")
    add("--clients", type=int, default=4, help="client processes")
    add("--faults", default=",".join(FAULTS), help=f"which faults, in order: {', '.join(FAULTS)}")
    add("--broker-outage-seconds", type=float, default=60.0, help="how long redis stays away")
    add("--pg-down-seconds", type=float, default=10.0, help="between PostgreSQL's stop and start")
    add("--warmup-seconds", type=float, default=8.0, help="load before the first fault")
    add("--settle-seconds", type=float, default=12.0, help="load after each fault")
    add("--request-timeout", type=float, default=15.0, help="client timeout per request")
    add("--retry-budget-seconds", type=float, default=600.0,
        help="a client gives a batch up after retrying it this long")  # fmt: skip
    add("--catch-up-timeout", type=float, default=300.0,
        help="after the load, wait this long at most for everything to be processed")  # fmt: skip
    add("--sweep-after-seconds", type=int, default=10, help="CDP_PENDING_SWEEP_AFTER_SECONDS")
    add("--web-workers", type=int, default=2, help="gunicorn gthread workers")
    add("--web-threads", type=int, default=4, help="threads per gunicorn worker")
    add("--celery-concurrency", type=int, default=2, help="Celery prefork pool processes")
    add("--pg-port", type=int, default=55432, help="the private PostgreSQL's port")
    add("--redis-port", type=int, default=56379, help="the private redis-server's port")
    add("--http-port", type=int, default=0, help="gunicorn's port (0: a free one)")
    add("--keep-logs", metavar="DIR", help="copy the services' logs here before cleaning up")
    args = parser.parse_args()
    args.fault_list = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = set(args.fault_list) - set(FAULTS)
    if unknown:
        parser.error(f"--faults: unknown {', '.join(sorted(unknown))}; choose from {FAULTS}")
    if not (1 <= args.clients <= 32 and 1 <= args.batch_size <= 1000 and args.events >= 1):
        parser.error("clients 1-32, batch size 1-1000, events >= 1")
    for port in (args.pg_port, args.redis_port, args.http_port):
        if port and (port in (5432, 6379) or not port_free(port)):
            parser.error(f"port {port} is taken (or shared): pass another with --*-port")
    return args


def main() -> int:
    args = parse_args()
    run_tag = uuid.uuid4().hex[:8]
    http_port = args.http_port or free_port()
    plan_s = (
        args.warmup_seconds
        + sum(planned_seconds(f, args) + args.settle_seconds for f in args.fault_list)
        + 5  # leave the load running past the last fault's settling time
    )
    n_batches = -(-args.events // args.batch_size)
    interval = plan_s / n_batches
    print(
        f"cdp fault-injection benchmark: {args.events:,} events in {n_batches} batches of "
        f"{args.batch_size}, {args.clients} clients, paced over {plan_s:.0f} s "
        f"({args.events / plan_s:,.0f} events/s); faults: {', '.join(args.fault_list) or 'none'}",
        flush=True,
    )

    tmp = Path(tempfile.mkdtemp(prefix="cdp-faults-"))
    os.chmod(tmp, 0o755)  # the postgres user must reach its directory inside
    pg_root = tmp / "pg"
    pg_root.mkdir()
    logdir = tmp / "logs"
    logdir.mkdir()
    pg = PrivatePostgres(pg_root, args.pg_port)
    redis = PrivateRedis(args.redis_port, tmp, logdir)
    dsn = pg.dsn(DATABASE)
    env = server_env(dsn, args.redis_port, tmp / "static", args.sweep_after_seconds)
    gunicorn = Process(
        "gunicorn",
        [str(VENV_BIN / "gunicorn"), "cdp.wsgi", "-c", str(ROOT / "cdp" / "gunicorn.py"),
         "--bind", f"{HOST}:{http_port}", "--workers", str(args.web_workers),
         "--worker-class", "gthread", "--threads", str(args.web_threads),
         "--timeout", "30", "--graceful-timeout", "10", "--keep-alive", "5",
         # Not the shared default path (~/.gunicorn/gunicorn.ctl) of everyone's gunicorn.
         "--no-control-socket"],
        env, logdir,
    )  # fmt: skip
    worker = Process(
        "celery-worker",
        [str(VENV_BIN / "celery"), "-A", "cdp", "worker", "--pool", "prefork",
         "--concurrency", str(args.celery_concurrency), "--loglevel", "INFO",
         "--hostname", f"faults-{run_tag}@%h"],
        env, logdir,
    )  # fmt: skip
    beat = Process(
        "celery-beat",
        [str(VENV_BIN / "celery"), "-A", "cdp", "beat", "--loglevel", "INFO",
         "--schedule", str(tmp / "beat-schedule")],
        env, logdir,
    )  # fmt: skip
    ctx = mp.get_context("fork")
    counters = ctx.Array("q", N_COUNTERS)
    stop_clients = ctx.Event()
    run = Run(args, pg, redis, gunicorn, worker, beat, counters)
    clients: list[Any] = []
    progress_stop = threading.Event()
    outcome: dict[str, Any] = {}
    try:
        log(f"[setup] private PostgreSQL {pg.bin.parent.name} on {HOST}:{args.pg_port}, {pg_root}")
        pg.init()
        pg.start()
        with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        log(f"[setup] private redis-server on {HOST}:{args.redis_port}")
        redis.start()
        log("[setup] migrate, collectstatic, create_source")
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "collectstatic", "--noinput", "-v", "0")
        manage(env, "create_source", SOURCE_NAME, "--write-key", WRITE_KEY)
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT id FROM events_source WHERE write_key_hash = %s",
                [hashlib.sha256(WRITE_KEY.encode()).hexdigest()],
            ).fetchone()
        assert row is not None
        source_id = int(row[0])

        for service in (gunicorn, worker, beat):
            service.start()
        wait_for("gunicorn /healthz", lambda: http_ok(http_port), 60)
        wait_for(
            "gunicorn workers",
            lambda: len(children_of(gunicorn.pid)) >= args.web_workers,
            30,
        )
        wait_for("the Celery worker", lambda: " ready." in worker.log_text(), 90)
        wait_for("Celery beat", lambda: "beat: Starting" in beat.log_text(), 60)
        log(
            f"[setup] gunicorn {gunicorn.pid} (workers {children_of(gunicorn.pid)}) on "
            f"{HOST}:{http_port}; celery worker {worker.pid} (pool {children_of(worker.pid)}); "
            f"beat {beat.pid}"
        )

        global _BODIES
        _BODIES = build_bodies(args.events, args.batch_size, run_tag, seed=15)
        start_at = time.time() + 1.0
        client_plan = ClientPlan(
            port=http_port,
            start_at=start_at,
            interval=interval,
            clients=args.clients,
            request_timeout=args.request_timeout,
            retry_budget=args.retry_budget_seconds,
        )
        results = ctx.Queue()
        clients = [
            ctx.Process(
                target=client_main,
                args=(k, client_plan, counters, stop_clients, results),
                daemon=True,
            )
            for k in range(args.clients)
        ]
        for p in clients:
            p.start()
        time.sleep(max(0.0, start_at - time.time()))
        log(f"[load] started: one batch every {interval * 1000:.0f} ms")
        threading.Thread(
            target=progress, args=(run, dsn, source_id, args.events, progress_stop), daemon=True
        ).start()

        time.sleep(args.warmup_seconds)
        for name in args.fault_list:
            if all(not p.is_alive() for p in clients):
                run.note(f"! the load ended before fault {name}: raise --events")
            before = run.snapshot()
            FAULT_STEPS[name](run)
            time.sleep(args.settle_seconds)
            after = run.snapshot()
            run.note(f"    failed attempts from that fault to now: {cause_deltas(before, after)}")
            for service in (gunicorn, worker, beat):
                if not service.alive():
                    run.note(f"! {service.name} exited")

        # Bounded: every batch is answered or given up within its retry budget.
        reports: list[dict[str, Any]] = []
        hard_deadline = time.monotonic() + plan_s + args.retry_budget_seconds + 60
        while len(reports) < len(clients) and time.monotonic() < hard_deadline:
            with contextlib.suppress(Exception):
                reports.append(results.get(timeout=1))
            if all(not p.is_alive() for p in clients) and results.empty():
                break  # a client died without reporting: its batches count as not sent
        progress_stop.set()
        load_end = time.time()
        answered_times = [t for r in reports for _, t in r["answered"]]
        if answered_times:
            load_end = max(answered_times)
        log(f"[load] done: {len(reports)} of {len(clients)} clients reported")

        # Catch-up: until nothing stored is left unprocessed.
        log("[catch-up] waiting until every stored event is processed")
        catch_up: float | None = None
        deadline = time.monotonic() + args.catch_up_timeout
        last_line = 0.0
        while time.monotonic() < deadline:
            counts = db_counts(dsn, source_id)
            if counts:
                run.peak_unprocessed = max(run.peak_unprocessed, counts[1])
            if counts and counts[1] == 0:
                catch_up = max(0.0, time.time() - load_end)
                break
            if time.monotonic() - last_line > 10:
                last_line = time.monotonic()
                log(f"   catch-up: {counts[1] if counts else '?'} unprocessed")
            time.sleep(0.5)
        if catch_up is not None:
            log(f"[catch-up] all processed {catch_up:.1f} s after the load's last answer")
        else:
            log(f"[catch-up] ! still unprocessed after {args.catch_up_timeout:g} s")
        outcome.update(
            reports=reports,
            stored=db_stored(dsn, source_id),
            catch_up=catch_up,
            counters=run.snapshot(),
            peak_unprocessed=run.peak_unprocessed,
            run_tag=run_tag,
        )
        errors = {s.name: s.log_text().count("Traceback") for s in (gunicorn, worker, beat)}
        outcome["tracebacks"] = errors
        outcome["alive"] = {s.name: s.alive() for s in (gunicorn, worker, beat)}
    finally:
        progress_stop.set()
        stop_clients.set()
        for p in clients:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
        for service in (beat, worker, gunicorn):
            with contextlib.suppress(Exception):
                service.stop()
        with contextlib.suppress(Exception):
            redis.stop()
        if pg.running():
            try:
                pg.stop("fast")
            except Exception:
                with contextlib.suppress(Exception):
                    pg.stop("immediate")
        if args.keep_logs:
            dest = Path(args.keep_logs)
            dest.mkdir(parents=True, exist_ok=True)
            for f in [*logdir.glob("*.log"), pg.log]:
                with contextlib.suppress(OSError):
                    shutil.copy(f, dest / f.name)
            print(f"logs copied to {dest}")
        shutil.rmtree(tmp, ignore_errors=True)

    return report(args, outcome, run.notes)


def report(args: argparse.Namespace, outcome: dict[str, Any], notes: list[str]) -> int:
    reports: list[dict[str, Any]] = outcome["reports"]
    stored: Stored = outcome["stored"]
    counters: list[int] = outcome["counters"]
    batch_ids: list[list[str]] = []
    for start in range(0, args.events, args.batch_size):
        batch_ids.append(
            [f"faults-{outcome['run_tag']}-{s:08d}"
             for s in range(start, min(start + args.batch_size, args.events))]
        )  # fmt: skip
    answered = {m for r in reports for i, _ in r["answered"] for m in batch_ids[i]}
    failed = {m for r in reports for i in r["failed"] for m in batch_ids[int(i)]}
    sent = answered | failed
    lost = answered - stored.message_ids
    stored_unanswered = stored.message_ids & failed
    foreign = stored.message_ids - sent
    # One row per messageId is what the unique index guarantees; one row per event
    # (its own bench_seq) is what matters: a duplicate under another id would show here.
    duplicated = (stored.rows - len(stored.message_ids)) + sum(
        n - 1 for n in stored.seqs.values() if n > 1
    )
    unprocessed = stored.rows - stored.processed
    gave_up = counters[C_GAVE_UP]
    catch_up = outcome["catch_up"]

    print("\n" + "=" * 78)
    print("faults, in order:")
    for line in notes:
        print(f"  {line}")
    print("-" * 78)
    print(f"{'':46} {'value':>12}  target")

    def row(name: str, value: Any, target: str = "", ok: bool | None = None) -> None:
        text = f"{value:,}" if isinstance(value, int) else str(value)
        mark = "" if ok is None else ("  PASS" if ok else "  FAIL")
        print(f"{name:46} {text:>12}  {target}{mark}")

    row("events in the load", args.events)
    row("events sent", len(sent))
    if len(sent) < args.events:
        row("events never sent (a client died)", args.events - len(sent), "0", False)
    row("events answered 200", len(answered), "= sent", len(answered) == len(sent))
    row("requests answered 200", counters[C_ANSWERED])
    row("attempts (first tries and retries)", counters[C_ATTEMPTS])
    row("retries", counters[C_RETRIES])
    for name, i in CAUSES.items():
        if counters[i]:
            row(f"  failed attempts: {name}", counters[i])
    row("batches given up by the clients", gave_up, "0", gave_up == 0)
    row("events stored (distinct messageIds)", len(stored.message_ids))
    row("events duplicated", duplicated, "0", duplicated == 0)
    row("events lost (answered 200, not stored)", len(lost), "0", not lost)
    if stored_unanswered:
        row("events stored but never answered 200", len(stored_unanswered))
    if foreign:
        row("stored events this run never sent", len(foreign), "0", False)
    row("events processed", stored.processed, "= stored", unprocessed == 0)
    row("events unprocessed", unprocessed, "0", unprocessed == 0)
    if stored.without_profile:
        row("processed events without a profile", stored.without_profile)
    row("peak backlog (stored, not yet processed)", outcome["peak_unprocessed"])
    row(
        "catch-up: load's end to all processed",
        f"{catch_up:.1f} s" if catch_up is not None else "timeout",
    )
    print("-" * 78)
    down = [name for name, alive in outcome["alive"].items() if not alive]
    tracebacks = ", ".join(f"{k} {v}" for k, v in outcome["tracebacks"].items())
    print(f"tracebacks in the logs: {tracebacks}" + (f"; exited: {down}" if down else ""))
    print("=" * 78)
    if lost:
        print(f"lost messageIds, e.g. {sorted(lost)[:5]}")
    failed_causes = sorted({v for r in reports for v in r["failed"].values()})
    if failed_causes:
        print(f"why batches were given up: {failed_causes}")
    ok = (
        not lost
        and duplicated == 0
        and unprocessed == 0
        and gave_up == 0
        and not foreign
        and len(sent) == args.events
    )
    return 0 if ok else 1


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM/SIGHUP become SystemExit, so that the finally block tears down.
    raise SystemExit(f"stopped by signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    sys.exit(main())
