"""Identity resolution under real concurrency: parallel workers, overlapping people.

Events for the same people (several anonymous devices, a user id, an email, aliases
and a few devices two people share) are stored first, then processed in small
batches by several workers at once, each with its own database connection: threads
in this process, or separate worker processes (the honest case: no shared Python
state at all). Batches are dealt at random, so different workers touch the same
identities in different orders, and some batches are delivered twice, as a broker
redelivers after a lost acknowledgement. Workers retry on OperationalError as the
Celery task does (deadlocks, serialization failures, "database is locked").

After each round, against the ground truth of who is who:

* every event is processed exactly once, and belongs to its person's profile;
* each person has exactly one live profile, holding all of their identifiers and
  nobody else's (a shared device goes to one of its two users);
* every identifier points at a live profile, and there are as many live profiles
  as people: no duplicate profile, no lost merge;
* each absorbed profile was absorbed once and leads to a live one;
* traits are the newest by event time, first/last seen match the events: no
  worker overwrote another's update;
* no worker failed after its retries, and all work finished in bounded time.

Runs on PostgreSQL (advisory and row locks, real deadlock detection) and on
embedded SQLite (WAL, IMMEDIATE transactions: writers queue up). Retries by cause
(deadlock, serialization, sqlite_locked) and round times are printed (``-s``);
CDP_CONCURRENCY_SEED replays or varies the arrival orders.
"""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import pytest
from django.conf import settings
from django.db import (
    OperationalError,
    close_old_connections,
    connection,
    connections,
    transaction,
)
from django.db.models import Max, Min
from django.utils import timezone

from apps.events import services as event_services
from apps.events.auth import source_create
from apps.events.models import Event, Source
from apps.events.parsing import BatchDefaults
from apps.events.services import event_ingest, events_process
from apps.identity.models import Identifier, IdentityConflict, Profile, ProfileMerge
from apps.identity.services import IdentityClaim, profile_split, profiles_resolve

pytestmark = pytest.mark.django_db(transaction=True)

SEED = int(os.environ.get("CDP_CONCURRENCY_SEED", "20250301"))
WORKERS = 4
ROUNDS = 4
NEW_PEOPLE = 10  # per round
RETURNING_PEOPLE = 4  # people of earlier rounds who come back on a new device
SHARED_DEVICES = 2  # per round: one device, two people who log in on it
MAX_BATCH = 8
REDELIVERED = 0.15  # share of batches a second worker also receives
MAX_RETRIES = 10  # as the events_process task
ROUND_TIMEOUT = 60.0  # seconds for all workers to finish one round
LOCK_TIMEOUT = "20s"  # a lock wait this long means a hang: fail instead of blocking
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

Key = tuple[str, str]


# --- Workers --------------------------------------------------------------------


@dataclass
class WorkerReport:
    processed: int = 0
    batches: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _retry_reason(exc: OperationalError) -> str:
    state = getattr(exc.__cause__, "sqlstate", None)
    named = {"40P01": "deadlock", "40001": "serialization", "55P03": "lock_timeout"}
    if state in named:
        return named[state]
    if "database is locked" in str(exc) or "database table is locked" in str(exc):
        return "sqlite_locked"
    return f"other:{state or type(exc.__cause__).__name__}:{str(exc)[:80]}"


def _guard_lock_waits() -> None:
    # A safety net, not a behaviour change: no healthy lock wait comes near it, and
    # a hung worker would otherwise block the database flush after the test.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")


def _work(batches: Sequence[Sequence[int]], start: Callable[[], Any]) -> WorkerReport:
    """Process batches one after the other as a Celery worker would run the tasks:
    retry on OperationalError with exponential backoff and jitter, and close the
    connection after each attempt (Celery's Django fixup; CONN_MAX_AGE is 0 here)."""
    report = WorkerReport()
    jitter = random.Random()
    retries: Counter[str] = Counter()
    connection.ensure_connection()
    start()
    began = time.monotonic()
    for batch in batches:
        report.batches += 1
        attempt = 0
        while True:
            try:
                _guard_lock_waits()
                report.processed += events_process(event_ids=list(batch))
                break
            except OperationalError as exc:
                retries[_retry_reason(exc)] += 1
                if attempt == MAX_RETRIES:
                    report.errors.append(f"gave up after {attempt} retries: {exc}")
                    break
                attempt += 1
                time.sleep(jitter.uniform(0, min(0.5, 0.01 * 2**attempt)))
            except Exception as exc:  # the task would fail: so does the test
                report.errors.append(f"{type(exc).__name__}: {exc}")
                break
            finally:
                close_old_connections()
    report.retries = dict(retries)
    report.seconds = time.monotonic() - began
    return report


RunWorkers = Callable[[list[list[list[int]]]], list[WorkerReport]]


@contextmanager
def _thread_workers() -> Iterator[RunWorkers]:
    def run(assignments: list[list[list[int]]]) -> list[WorkerReport]:
        barrier = threading.Barrier(len(assignments))
        reports: list[WorkerReport | None] = [None] * len(assignments)

        def target(i: int) -> None:
            try:
                reports[i] = _work(assignments[i], lambda: barrier.wait(timeout=30))
            except BaseException as exc:
                reports[i] = WorkerReport(errors=[f"worker crashed: {exc!r}"])
            finally:
                connections.close_all()

        threads = [
            threading.Thread(target=target, args=(i,), name=f"worker-{i}", daemon=True)
            for i in range(len(assignments))
        ]
        deadline = time.monotonic() + ROUND_TIMEOUT
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        hung = [t.name for t in threads if t.is_alive()]
        assert not hung, f"workers still running after {ROUND_TIMEOUT}s: {hung}"
        return [r for r in reports if r is not None]

    yield run


# A worker process: the same Django settings as this test process, pointed at the
# test database (as Django's test runner points its own connection at it), then one
# JSON message a line on stdin/stdout.
_CHILD = """
import sys
import django
django.setup()
from django.conf import settings
from django.db import connections
settings.DATABASES["default"]["NAME"] = connections["default"].settings_dict["NAME"] = sys.argv[1]
from tests.identity.test_concurrency import _serve
_serve()
"""


def _serve() -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # only protocol messages on the real stdout

    def send(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    def go() -> None:
        send({"armed": True})
        assert sys.stdin.readline().strip() == "go"

    send({"ready": True})
    while line := sys.stdin.readline():
        report = _work(json.loads(line)["batches"], go)
        send(asdict(report))


def _pump(stream: TextIO, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@contextmanager
def _process_workers(count: int) -> Iterator[RunWorkers]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE, "LOG_LEVEL": "WARNING"}
    name = str(connection.settings_dict["NAME"])
    procs: list[subprocess.Popen[str]] = []
    logs: list[Any] = []
    inboxes: list[queue.Queue[str | None]] = []
    with ExitStack() as stack:
        stack.callback(_stop, procs)
        for _ in range(count):
            log = stack.enter_context(tempfile.TemporaryFile(mode="w+"))
            proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, name],
                cwd=settings.BASE_DIR,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            inbox: queue.Queue[str | None] = queue.Queue()
            threading.Thread(target=_pump, args=(proc.stdout, inbox), daemon=True).start()
            procs.append(proc)
            logs.append(log)
            inboxes.append(inbox)

        def receive(i: int, deadline: float) -> dict[str, Any]:
            try:
                line = inboxes[i].get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = "timeout"
            if line is None or line == "timeout":
                logs[i].seek(0)
                tail = logs[i].read()[-3000:]
                pytest.fail(f"worker process {i}: {line or 'exited'}; its stderr:\n{tail}")
            return json.loads(line)  # type: ignore[no-any-return]

        def send(i: int, text: str) -> None:
            stdin = procs[i].stdin
            assert stdin is not None
            stdin.write(text + "\n")
            stdin.flush()

        startup = time.monotonic() + 60
        for i in range(count):
            assert receive(i, startup) == {"ready": True}

        def run(assignments: list[list[list[int]]]) -> list[WorkerReport]:
            deadline = time.monotonic() + ROUND_TIMEOUT
            for i, batches in enumerate(assignments):
                send(i, json.dumps({"batches": batches}))
            for i in range(count):
                assert receive(i, deadline) == {"armed": True}
            for i in range(count):  # the barrier: everyone is connected and waiting
                send(i, "go")
            return [WorkerReport(**receive(i, deadline)) for i in range(count)]

        yield run


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.stdin:
            proc.stdin.close()  # end of input: the worker exits
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- Ground truth -----------------------------------------------------------------


@dataclass
class Person:
    number: int
    user_id: str
    email: str  # normalized
    devices: list[str] = field(default_factory=list)

    def identifiers(self) -> set[Key]:
        return {
            ("user_id", self.user_id),
            ("email", self.email),
            *(("anonymous_id", d) for d in self.devices),
        }


class World:
    """People, the events they send, and what each event should resolve to."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.people: list[Person] = []
        self.shared: dict[str, tuple[Person, Person]] = {}
        self.owner_key: dict[str, Key] = {}  # messageId -> the key that decides its profile
        self.person_of: dict[str, Person | None] = {}  # messageId -> whose event
        self.traits: dict[int, dict[str, tuple[datetime, Any]]] = defaultdict(dict)
        self._clock = 0
        self._ids = 0

    def _uid(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:8]}"

    def _at(self) -> datetime:
        # Distinct event times, so "newest wins" has one right answer.
        self._clock += 1
        return T0 + timedelta(minutes=self.rng.randrange(0, 60 * 24 * 30), microseconds=self._clock)

    def _email_as_sent(self, person: Person) -> str:
        return self.rng.choice(
            [person.email, person.email.upper(), f"  {person.email.capitalize()} "]
        )

    def _event(
        self,
        person: Person | None,
        kind: str,
        *,
        user: str = "",
        anon: str = "",
        previous: str = "",
        traits: dict[str, Any] | None = None,
        context_traits: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        at = self._at()
        message_id = self._uid("msg")
        event: dict[str, Any] = {"type": kind, "messageId": message_id, "timestamp": at.isoformat()}
        if user:
            event["userId"] = user
        if anon:
            event["anonymousId"] = anon
        if previous:
            event["previousId"] = previous
        if kind == "track":
            event["event"] = self.rng.choice(["Product Viewed", "Cart Viewed", "Order Completed"])
        if traits:
            event["traits"] = traits
        if context_traits:
            event["context"] = {"traits": context_traits}
        self.owner_key[message_id] = ("user_id", user) if user else ("anonymous_id", anon)
        self.person_of[message_id] = person
        if person is not None:
            for name, value in {**(context_traits or {}), **(traits or {})}.items():
                seen = self.traits[person.number].get(name)
                if seen is None or seen[0] < at:
                    self.traits[person.number][name] = (at, value)
        return event

    def _device_story(self, person: Person) -> list[dict[str, Any]]:
        """An anonymous visitor on a new device who turns out to be ``person``."""
        device = self._uid(f"anon-p{person.number}")
        person.devices.append(device)
        events = [self._event(person, "track", anon=device) for _ in range(self.rng.randint(1, 3))]
        link = self.rng.choice(["identify", "alias", "email_on_track", "anonymous_identify"])
        email = self._email_as_sent(person)
        if link == "identify":  # logs in on this device
            traits = {"email": email, "plan": self.rng.choice(["free", "pro", "team"])}
            events.append(
                self._event(person, "identify", user=person.user_id, anon=device, traits=traits)
            )
        elif link == "alias":  # the server aliases the device to the account
            events.append(self._event(person, "alias", user=person.user_id, previous=device))
        elif link == "email_on_track":  # a newsletter signup form
            events.append(
                self._event(person, "track", anon=device, context_traits={"email": email})
            )
        else:
            events.append(self._event(person, "identify", anon=device, traits={"email": email}))
        if self.rng.random() < 0.5:
            events.append(self._event(person, "track", user=person.user_id, anon=device))
        return events

    def _newcomer(self) -> list[dict[str, Any]]:
        number = len(self.people)
        person = Person(
            number=number,
            user_id=self._uid(f"user-p{number}"),
            email=f"{self._uid(f'p{number}')}@example.com",
        )
        self.people.append(person)
        # The account: created server-side with the email, or by logging in on the
        # first device.
        events = self._device_story(person)
        traits = {"email": self._email_as_sent(person), "name": f"Person {number}"}
        if self.rng.random() < 0.5:
            events.append(self._event(person, "identify", user=person.user_id, traits=traits))
        else:
            events.append(
                self._event(
                    person, "identify", user=person.user_id, anon=person.devices[0], traits=traits
                )
            )
        for _ in range(self.rng.randint(0, 2)):
            events += self._device_story(person)
        return events

    def _returning(self, person: Person) -> list[dict[str, Any]]:
        events = self._device_story(person)
        old = self.rng.choice(person.devices[:-1])
        events.append(self._event(person, "track", anon=old))
        events.append(
            self._event(
                person, "identify", user=person.user_id, traits={"plan": self.rng.choice("xyz")}
            )
        )
        return events

    def _shared_device(self, a: Person, b: Person) -> list[dict[str, Any]]:
        """A family tablet: both log in on it. It ends up with one of them."""
        device = self._uid("anon-shared")
        self.shared[device] = (a, b)
        return [
            self._event(None, "track", anon=device),
            self._event(a, "identify", user=a.user_id, anon=device),
            self._event(b, "identify", user=b.user_id, anon=device),
            self._event(b, "track", user=b.user_id, anon=device),
        ]

    def round(self) -> list[dict[str, Any]]:
        earlier = list(self.people)
        events = []
        for _ in range(NEW_PEOPLE):
            events += self._newcomer()
        back = self.rng.sample(earlier, min(RETURNING_PEOPLE, len(earlier)))
        for person in back:
            events += self._returning(person)
        active = self.people[len(earlier) :] + back
        for _ in range(SHARED_DEVICES):
            events += self._shared_device(*self.rng.sample(active, 2))
        self.rng.shuffle(events)  # arrival order: identify before or after the visit
        return events

    def deal(self, event_ids: list[int]) -> list[list[list[int]]]:
        """Cut the events into batches of random size, deal them to the workers, and
        deliver some batches twice."""
        batches = []
        start = 0
        while start < len(event_ids):
            size = self.rng.randint(1, MAX_BATCH)
            batches.append(event_ids[start : start + size])
            start += size
        self.rng.shuffle(batches)
        hands: list[list[list[int]]] = [[] for _ in range(WORKERS)]
        for i, batch in enumerate(batches):
            hands[i % WORKERS].append(batch)
            if self.rng.random() < REDELIVERED:
                other = hands[(i + self.rng.randint(1, WORKERS - 1)) % WORKERS]
                other.insert(self.rng.randint(0, len(other)), batch)
        return hands


# --- The test ---------------------------------------------------------------------


def _ingest(source: Source, events: list[dict[str, Any]]) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(events), 50):
        result = event_ingest(
            source=source,
            events=events[start : start + 50],
            defaults=BatchDefaults(received_at=timezone.now()),
        )
        assert result.rejected == []
        ids += result.stored
    assert len(ids) == len(events)
    return ids


def _assert_resolved(world: World, where: str) -> None:
    live = set(Profile.objects.live().values_list("id", flat=True))
    rows = list(Identifier.objects.values_list("type", "value", "profile_id"))
    owner = {(kind, value): pid for kind, value, pid in rows}

    # No identifier twice, none on an absorbed profile, none we did not send.
    duplicated = [k for k, n in Counter((kind, value) for kind, value, _ in rows).items() if n > 1]
    assert duplicated == [], where
    stale = {k: pid for k, pid in owner.items() if pid not in live}
    assert stale == {}, f"{where}: identifiers on absorbed profiles"
    expected_keys = {k for p in world.people for k in p.identifiers()}
    expected_keys |= {("anonymous_id", d) for d in world.shared}
    assert set(owner) == expected_keys, where

    # One live profile per person, with all of their identifiers, nobody else's.
    profile_of: dict[int, Any] = {}
    for person in world.people:
        held = {owner[k] for k in person.identifiers()}
        assert len(held) == 1, f"{where}: person {person.number} is split over {held}"
        profile_of[person.number] = held.pop()
    holders = Counter(profile_of.values())
    together = [pid for pid, n in holders.items() if n > 1]
    assert together == [], f"{where}: different people merged into one profile"
    for device, (a, b) in world.shared.items():
        assert owner[("anonymous_id", device)] in {profile_of[a.number], profile_of[b.number]}
    assert len(live) == len(world.people), f"{where}: {len(live)} live profiles"

    # Merges: each absorbed profile absorbed once, and on the way to a live one.
    absorbed = dict(
        Profile.objects.filter(merged_into__isnull=False).values_list("id", "merged_into")
    )
    merges = Counter(ProfileMerge.objects.values_list("absorbed_id", flat=True))
    assert merges == Counter(absorbed.keys()), f"{where}: merge records and absorbed profiles"
    for start in absorbed:
        pid: Any = start
        hops = 0
        while pid in absorbed and hops <= len(absorbed):
            pid, hops = absorbed[pid], hops + 1
        assert pid in live, f"{where}: {start} does not lead to a live profile"

    # Conflicts are only ever about the shared devices.
    conflicts = set(IdentityConflict.objects.values_list("identifier_type", "identifier_value"))
    assert conflicts <= {("anonymous_id", d) for d in world.shared}, where

    # Every event processed, on the profile its strongest identifier now belongs to.
    events = list(Event.objects.values_list("message_id", "profile_id", "processed_at"))
    assert [m for m, _, processed in events if processed is None] == [], where
    wrong = [m for m, pid, _ in events if pid != owner[world.owner_key[m]]]
    assert wrong == [], f"{where}: events on the wrong profile"
    for m, pid, _ in events:
        sender = world.person_of[m]
        if sender is not None:
            assert pid == profile_of[sender.number], f"{where}: event {m}"

    # Nothing written by one worker was lost to another: newest trait values, and
    # first/last seen spanning exactly the profile's events.
    profiles = {p.id: p for p in Profile.objects.filter(id__in=live)}
    for person in world.people:
        expected = {name: value for name, (_, value) in world.traits[person.number].items()}
        assert profiles[profile_of[person.number]].traits == expected, f"{where}: traits"
    spans = Event.objects.values("profile_id").annotate(
        first=Min("timestamp"), last=Max("timestamp")
    )
    for span in spans:
        profile = profiles[span["profile_id"]]
        assert (profile.first_seen, profile.last_seen) == (span["first"], span["last"]), where


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_parallel_workers_give_each_person_exactly_one_profile(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given stored events whose processing is left to the workers below
    enqueued: list[int] = []
    monkeypatch.setattr(event_services, "_enqueue", enqueued.extend)
    source, _ = source_create(name="Concurrency", write_key="wk_concurrency")
    world = World(SEED)
    retries: Counter[str] = Counter()
    timings = []
    workers = _thread_workers() if mode == "threads" else _process_workers(WORKERS)
    with workers as run:
        for round_no in range(ROUNDS):
            where = f"{connection.vendor}/{mode}, seed {SEED}, round {round_no}"
            ids = _ingest(source, world.round())
            assert sorted(enqueued) == sorted(ids), "each stored event would have been enqueued"
            enqueued.clear()
            assignments = world.deal(ids)

            # when several workers process the batches at once
            started = time.monotonic()
            reports = run(assignments)
            timings.append(time.monotonic() - started)

            # then no worker failed, each event was processed once, and identities hold
            assert [e for r in reports for e in r.errors] == [], where
            assert len(reports) == WORKERS, where
            assert sum(r.processed for r in reports) == len(ids), where
            assert timings[-1] < ROUND_TIMEOUT, where
            for report in reports:
                retries.update(report.retries)
            _assert_resolved(world, where)

    print(
        f"\n{connection.vendor}/{mode}: {ROUNDS} rounds, {len(world.people)} people, "
        f"{Event.objects.count()} events, {ProfileMerge.objects.count()} merges, "
        f"round seconds {[round(t, 2) for t in timings]}, retries {dict(retries) or 'none'}"
    )
    # Deadlocks and busy databases are retried, as the task retries them; a lock
    # wait of LOCK_TIMEOUT or any other database error is a bug.
    unexpected = [r for r in retries if r == "lock_timeout" or r.startswith("other:")]
    assert unexpected == [], f"unexpected OperationalErrors: {dict(retries)}"


def _wait_until_blocked(backend_pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [backend_pid]
            )
            row = cursor.fetchone()
        if row and row[0] == "Lock":
            return True
        time.sleep(0.02)
    return False


def test_an_event_processed_during_a_split_goes_with_the_identifiers_split_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writer at a time: a split and a batch cannot interleave")
    # given an account and a device merged into it, and an event from the device
    monkeypatch.setattr(event_services, "_enqueue", lambda ids: None)
    [account] = profiles_resolve(claims=[IdentityClaim([("user_id", "u-1")], T0)])
    [device] = profiles_resolve(
        claims=[IdentityClaim([("anonymous_id", "tablet")], T0 + timedelta(days=1))]
    )
    profiles_resolve(
        claims=[
            IdentityClaim([("user_id", "u-1"), ("anonymous_id", "tablet")], T0 + timedelta(days=2))
        ]
    )
    assert account is not None and device is not None
    assert Profile.objects.get(pk=device).merged_into_id == account
    source, _ = source_create(name="Split", write_key="wk_split")
    [event_id] = event_ingest(
        source=source,
        events=[
            {"type": "identify", "anonymousId": "tablet", "traits": {"email": "kid@example.com"}}
        ],
        defaults=BatchDefaults(received_at=timezone.now()),
    ).stored

    # when an admin splits the device out while a worker processes that event: the
    # worker has read who owns "tablet" and waits for the account's row lock
    locked, go = threading.Event(), threading.Event()
    worker_pid: list[int] = []

    def admin() -> None:
        try:
            with transaction.atomic():
                list(Profile.objects.select_for_update().filter(pk__in=[account, device]))
                locked.set()
                go.wait(10)
                profile_split(profile_id=device)
        finally:
            connections.close_all()

    def worker() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                worker_pid.append(cursor.fetchone()[0])
            events_process(event_ids=[event_id])
        finally:
            connections.close_all()

    admin_thread = threading.Thread(target=admin)
    admin_thread.start()
    assert locked.wait(10)
    worker_thread = threading.Thread(target=worker)
    worker_thread.start()
    while not worker_pid and worker_thread.is_alive():
        time.sleep(0.01)
    blocked = _wait_until_blocked(worker_pid[0])
    go.set()
    admin_thread.join(20)
    worker_thread.join(20)
    assert blocked, "the worker never waited for the account's lock"

    # then the event and what it brought are on the device's profile, with "tablet"
    owner = dict(Identifier.objects.values_list("value", "profile_id"))
    assert owner["tablet"] == device
    assert Event.objects.get(pk=event_id).profile_id == device
    assert owner["kid@example.com"] == device
