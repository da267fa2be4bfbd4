"""Fill a fresh install with realistic e-commerce demo data.

The events go in the way real ones do: Segment-spec JSON through ``event_ingest``
(validation, rejected-event log, messageId dedup) and then ``events_process``
(identity resolution), so the demo exercises the product rather than bypassing it.
Then one dedup pass (``dedup_run``: a few sure pairs merged, a few left to review)
and a handful of data-subject requests, made with the consent services: received,
verified, an access request answered with its export, an erasure with its proof,
a rejected one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from apps.consent.api.views import export_response
from apps.consent.models import DataSubjectRequest, RequestStatus, RequestType
from apps.consent.services.defaults import purposes_default_ensure
from apps.consent.services.dsr import dsr_create, dsr_transition
from apps.consent.services.erasure import erasure_run, erasure_start
from apps.events.auth import source_create
from apps.events.demo import DemoGenerator, demo_steps
from apps.events.models import Event, Source
from apps.events.parsing import BatchDefaults
from apps.events.services import event_ingest, events_process
from apps.identity.dedup.services import dedup_run

DEMO_SOURCE_NAME = "Demo web"
CHUNK_SIZE = 500  # events per ingest call and per processing call, as in /v1/batch
# Eager Celery logs a line per task and identity one per merge: hundreds of lines
# that would bury the progress bars. They show again with -v 2.
NOISY_LOGGERS = (
    "celery.app.trace",
    "apps.identity.services",
    "apps.identity.dedup.services",
    "apps.consent.services",
)


@contextmanager
def _quiet_loggers(names: Sequence[str], *, enabled: bool) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names] if enabled else []
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class Command(BaseCommand):
    help = (
        'Fill the "Demo web" source with realistic e-commerce demo data: customers with '
        "distinct behaviour, anonymous visitors, orders, email opens (Segment spec)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customers", type=int, default=2000, help="Customers (default 2000).")
        parser.add_argument("--days", type=int, default=180, help="Days of history (default 180).")
        parser.add_argument("--seed", type=int, default=42, help="Random seed (default 42).")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Load even if the demo source already has events. The same seed yields the "
            "same messageIds, which are then skipped; another seed adds new people.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with _quiet_loggers(NOISY_LOGGERS, enabled=options["verbosity"] < 2):
            self._load(**options)

    def _load(self, **options: Any) -> None:
        customers, days = options["customers"], options["days"]
        if customers < 1 or days < 1:
            raise CommandError("--customers and --days must be at least 1.")
        quiet = options["verbosity"] == 0
        source = Source.objects.filter(name=DEMO_SOURCE_NAME).first()
        new_key = None
        if source is None:
            source, new_key = source_create(name=DEMO_SOURCE_NAME)

        purposes_default_ensure()  # the demo's events carry cookie-banner answers
        if not options["force"] and Event.objects.filter(source=source).exists():
            self.stdout.write("demo data already loaded (use --force to load more)")
            return

        generator = DemoGenerator(
            customers=customers, days=days, seed=options["seed"], now=timezone.now()
        )
        stored: list[int] = []
        rejected = 0
        buffer: list[dict[str, Any]] = []

        def flush(events: Sequence[dict[str, Any]]) -> None:
            nonlocal rejected
            result = event_ingest(
                source=source,
                events=events,
                # historical: keep the generated times (no clock-skew correction).
                defaults=BatchDefaults(received_at=timezone.now(), historical=True),
                path="load_demo",
            )
            stored.extend(result.stored)
            rejected += len(result.rejected)

        # tqdm writes to the real stderr: Django's OutputWrapper would end each
        # redraw with a newline.
        with tqdm(
            total=len(generator.people),
            desc="Generating and storing",
            unit="person",
            file=sys.stderr,
            disable=quiet,
        ) as bar:
            for events in generator.people_events():
                buffer.extend(events)
                while len(buffer) >= CHUNK_SIZE:
                    flush(buffer[:CHUNK_SIZE])
                    del buffer[:CHUNK_SIZE]
                bar.update(1)
            if buffer:
                flush(buffer)
        # A visit going on now, so that real-time segments have members at once.
        live = generator.live_events(timezone.now())
        generator.stats.events += len(live)
        if live:
            flush(live)

        # Processing is called directly rather than left to Celery: the demo must be
        # complete when the command returns, with or without a worker. With eager
        # Celery (the embedded default) ingest has already processed most events on
        # commit; events_process skips those, so nothing is done twice.
        with tqdm(
            total=len(stored),
            desc="Resolving profiles",
            unit="event",
            file=sys.stderr,
            disable=quiet,
        ) as bar:
            for start in range(0, len(stored), CHUNK_SIZE):
                chunk = stored[start : start + CHUNK_SIZE]
                events_process(event_ids=chunk)
                bar.update(len(chunk))

        dedup = self._dedup()
        requests = self._requests(source, generator)
        # What the apps above events show of the demo (segments: RFM scores).
        finished = [step() for step in demo_steps]
        self._summary(source, generator, stored=len(stored), rejected=rejected, new_key=new_key)
        self.stdout.write("\n".join([dedup, requests, *finished]))

    def _dedup(self) -> str:
        """One dedup pass, so that the review queue has something in it."""
        run = dedup_run(full=True)
        if run is None:
            return "  dedup:              another run is in progress; none done"
        return (
            f"  dedup:              {run.auto_merged:,} pairs merged, {run.queued:,} to review, "
            f"{run.refused:,} refused by the safety rules"
        )

    def _requests(self, source: Source, generator: DemoGenerator) -> str:
        """Data-subject requests in each state, made as staff would make them."""
        if DataSubjectRequest.objects.exists():
            return "  data-subject requests: some already there, none added"
        now = timezone.now()
        emails = sorted(
            (p.index, p.traits["email"]) for p in generator.people if p.user_id is not None
        )
        subjects = [f"email:{email}" for _, email in emails[:3]]
        while len(subjects) < 3:  # a demo of one customer
            subjects.append(subjects[-1])

        def request(kind: str, subject: str, days_ago: int, details: str) -> Any:
            return dsr_create(
                type=kind,
                subject=subject,
                received_at=now - timedelta(days=days_ago),
                details=details,
            )

        request(RequestType.ACCESS, subjects[0], 2, "Asked by email what data we hold.")
        verified = request(
            RequestType.RECTIFICATION, subjects[1], 6, "Their address is out of date."
        )
        dsr_transition(request=verified, status=RequestStatus.VERIFIED, note="ID checked")
        access = request(RequestType.ACCESS, subjects[2], 12, "Asked for a copy of their data.")
        access = dsr_transition(request=access, status=RequestStatus.VERIFIED, note="ID checked")
        export_response(access, None)  # records the export and its checksum
        dsr_transition(request=access, status=RequestStatus.COMPLETED, note="export sent")
        rejected = request(RequestType.ERASURE, "email:someone@example.net", 20, "By phone.")
        dsr_transition(
            request=rejected,
            status=RequestStatus.REJECTED,
            note="The caller could not show they are the person.",
        )
        # A customer who left: their events go in, then the erasure takes them out
        # again, and the request keeps the proof (what was erased, how many).
        email, events = generator.leaver_events()
        result = event_ingest(
            source=source,
            events=events,
            defaults=BatchDefaults(received_at=timezone.now(), historical=True),
            path="load_demo",
        )
        events_process(event_ids=result.stored)
        erasure = request(RequestType.ERASURE, f"email:{email}", 9, "Closed their account.")
        erasure = dsr_transition(request=erasure, status=RequestStatus.VERIFIED, note="ID checked")
        erasure_start(request=erasure)
        erasure_run(request_id=erasure.pk)
        return "  data-subject requests: 5 (received, verified, exported, erased, rejected)"

    def _summary(
        self,
        source: Source,
        generator: DemoGenerator,
        *,
        stored: int,
        rejected: int,
        new_key: str | None,
    ) -> None:
        stats = generator.stats
        profiles = (
            Event.objects.filter(source=source, profile__isnull=False)
            .values("profile_id")
            .distinct()
            .count()
        )
        skipped = stats.events - stored - rejected
        # The key is shown when the source is made, never again (only its digest is
        # kept): later, its prefix and how to get a new one.
        key = new_key or (
            f"{source.write_key_prefix}…, shown when it was made; "
            f'rotate_write_key "{source.name}" makes a new one'
        )
        lines = [
            f'Demo data loaded into source "{source.name}" (write key {key}):',
            f"  events:             {stored:,} stored"
            + (f" ({skipped:,} already there)" if skipped else ""),
            f"  customers:          {stats.customers:,}",
            f"  anonymous visitors: {stats.anonymous_visitors:,}",
            f"  profiles:           {profiles:,}",
            f"  orders:             {stats.orders:,}",
            f"  revenue:            {stats.revenue:,.2f} USD",
        ]
        self.stdout.write("\n".join(lines))
        if rejected:
            self.stderr.write(
                f"{rejected} demo events were rejected; see the rejected-event log in admin."
            )
