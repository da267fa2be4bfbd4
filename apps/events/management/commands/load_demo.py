"""Fill a fresh install with realistic e-commerce demo data.

The events go in the way real ones do: Segment-spec JSON through ``event_ingest``
(validation, rejected-event log, messageId dedup) and then ``events_process``
(identity resolution), so the demo exercises the product rather than bypassing it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from apps.consent.services.defaults import purposes_default_ensure
from apps.events.demo import DemoGenerator
from apps.events.models import Event, Source
from apps.events.parsing import BatchDefaults
from apps.events.services import event_ingest, events_process

DEMO_SOURCE_NAME = "Demo web"
CHUNK_SIZE = 500  # events per ingest call and per processing call, as in /v1/batch
# Eager Celery logs a line per task and identity one per merge: hundreds of lines
# that would bury the progress bars. They show again with -v 2.
NOISY_LOGGERS = ("celery.app.trace", "apps.identity.services", "apps.consent.services")


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
        source, _ = Source.objects.get_or_create(name=DEMO_SOURCE_NAME)

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

        self._summary(source, generator, stored=len(stored), rejected=rejected)

    def _summary(
        self, source: Source, generator: DemoGenerator, *, stored: int, rejected: int
    ) -> None:
        stats = generator.stats
        profiles = (
            Event.objects.filter(source=source, profile__isnull=False)
            .values("profile_id")
            .distinct()
            .count()
        )
        skipped = stats.events - stored - rejected
        lines = [
            f'Demo data loaded into source "{source.name}" (write key {source.write_key}):',
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
