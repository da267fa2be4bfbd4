"""Destinations (saving them, their secrets and schedules) and export runs
(starting one, never two at once, and executing it)."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from apps.common.crypto import (
    SecretDecryptError,
    secret_encrypt,
    secret_is_current,
    secret_reencrypt,
)
from apps.common.utils import sha256_hex
from apps.segments.models import Segment

from . import matching, matching_sql
from .files import Part, SplitWriter, exports_dir
from .kinds import settings_validate
from .models import (
    ACTIVE_RUN_STATUSES,
    FILE_KINDS,
    MATCH_KINDS,
    Destination,
    DestinationKind,
    ExportFile,
    ExportRun,
    Hashing,
    RunMode,
    RunStatus,
    RunTrigger,
)
from .selectors import (
    audience_counts,
    audience_profiles,
    chunked,
    chunked_sql,
    destination_audiences,
    outbox_last_id,
)

logger = logging.getLogger(__name__)

FEED_TOKEN_PREFIX = "cdpfeed_"
RUN_TASK = "apps.exports.tasks.export_run_scheduled"


class RunAlreadyActive(Exception):
    """The destination has a run pending or running."""


class NotRunnable(Exception):
    """The destination is not one that runs (a JSON feed is pulled), or disabled."""


# -- destinations -----------------------------------------------------------------


def webhook_secret_generate() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def feed_token_hash(raw: str) -> str:
    return sha256_hex(raw)


def _cron_fields(expression: str) -> dict[str, str]:
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(
            'schedule: a cron expression has five fields ("minute hour day month weekday")'
        )
    names = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
    return dict(zip(names, parts, strict=True))


def schedule_validate(expression: str) -> None:
    """``ValueError`` naming what is wrong with a cron expression ("" is fine)."""
    if not expression.strip():
        return
    from celery.schedules import crontab

    fields = _cron_fields(expression)
    try:
        crontab(**fields)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"schedule: {exc}") from exc


def _schedule_sync(destination: Destination) -> None:
    """Keep the destination's beat entry as its schedule says (none when empty
    or disabled); beat's DatabaseScheduler picks the change up."""
    task = destination.periodic_task
    wanted = destination.schedule.strip() and destination.enabled
    runnable = destination.kind != DestinationKind.JSON_FEED
    if not wanted or not runnable:
        if task is not None:
            destination.periodic_task = None
            Destination.objects.filter(pk=destination.pk).update(periodic_task=None)
            task.delete()
        return
    crontab, _ = CrontabSchedule.objects.get_or_create(
        **_cron_fields(destination.schedule), timezone="UTC"
    )
    name = f"exports: {destination.key} (destination {destination.pk})"
    values = {
        "name": name,
        "task": RUN_TASK,
        "crontab": crontab,
        "interval": None,
        "args": json.dumps([destination.pk]),
        "enabled": True,
    }
    if task is None:
        task = PeriodicTask.objects.create(**values)
        destination.periodic_task = task
        Destination.objects.filter(pk=destination.pk).update(periodic_task=task)
    else:
        for key, value in values.items():
            setattr(task, key, value)
        task.save()


@dataclass
class Saved:
    destination: Destination
    # Shown once, right after creation or rotation; never stored in the clear
    # (the feed token) or never shown again (the webhook secret).
    secret: str = ""


@transaction.atomic
def destination_save(
    *, destination: Destination, segments: Iterable[Segment] | None = None
) -> Saved:
    """Validate and save a destination, its segments and its beat entry. A new
    webhook gets a signing secret, a new feed a token (returned once); a new
    webhook starts pushing from the outbox as it is now, not its whole history."""
    destination.settings = settings_validate(destination.kind, destination.settings)
    schedule_validate(destination.schedule)
    creating = destination.pk is None
    secret = ""
    # Columns that others write while a form is open (delivery moves the cursor,
    # secrets_reencrypt rewrites the secret, the beat entry is linked by UPDATE):
    # an edit writes them only when it sets them itself, so saving a form loaded
    # earlier never puts back an old secret or rewinds the cursor.
    kept = {"outbox_cursor", "periodic_task", "webhook_secret_encrypted", "feed_token_hash"}
    if destination.kind == DestinationKind.WEBHOOK and not destination.webhook_secret_encrypted:
        secret = webhook_secret_generate()
        destination.webhook_secret_encrypted = secret_encrypt(secret)
        kept.discard("webhook_secret_encrypted")
    if destination.kind == DestinationKind.JSON_FEED and not destination.feed_token_hash:
        secret = FEED_TOKEN_PREFIX + secrets.token_urlsafe(32)
        destination.feed_token_hash = feed_token_hash(secret)
        destination.feed_token_prefix = secret[: len(FEED_TOKEN_PREFIX) + 6]
        kept.discard("feed_token_hash")
    if "feed_token_hash" in kept:
        kept.add("feed_token_prefix")
    if creating and destination.kind == DestinationKind.WEBHOOK:
        destination.outbox_cursor = outbox_last_id()
    if destination.enabled:
        destination.disabled_reason = ""
    destination.full_clean(exclude=["segments"])
    if creating:
        destination.save()
    else:
        destination.save(
            update_fields=[
                f.name
                for f in Destination._meta.concrete_fields
                if not f.primary_key and f.name not in kept | {"created_at"}
            ]
        )
    if segments is not None:
        destination.segments.set(list(segments))
    _schedule_sync(destination)
    return Saved(destination=destination, secret=secret)


@transaction.atomic
def destination_secret_rotate(*, destination: Destination) -> str:
    """A new webhook secret or feed token, returned once (the old one stops working)."""
    if destination.kind == DestinationKind.WEBHOOK:
        destination.webhook_secret_encrypted = ""
    elif destination.kind == DestinationKind.JSON_FEED:
        destination.feed_token_hash = ""
    else:
        raise NotRunnable(f"a {destination.kind} destination has no secret")
    return destination_save(destination=destination).secret


@dataclass
class Reencrypted:
    reencrypted: int = 0
    current: int = 0
    # Destination key -> why its secret could not be read (no key decrypts it).
    unreadable: dict[str, str] = field(default_factory=dict)


def destination_secrets_reencrypt(*, dry_run: bool = False) -> Reencrypted:
    """Every stored webhook secret encrypted under the first of CDP_SECRETS_KEY
    (after a new key was put first), so that the old keys can be dropped. One
    destination at a time, each row locked while it is rewritten (a rotation in
    admin meanwhile wins: its new secret is left as it is, being current). A
    secret no key decrypts is reported, left alone, and does not stop the rest.
    ``dry_run`` counts without writing."""
    done = Reencrypted()
    ids = (
        Destination.objects.exclude(webhook_secret_encrypted="")
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for pk in list(ids):
        with transaction.atomic():
            row = (
                Destination.objects.select_for_update()
                .filter(pk=pk)
                .values_list("key", "webhook_secret_encrypted")
                .first()
            )
            if row is None or not row[1]:
                continue
            key, token = row
            if secret_is_current(token):
                done.current += 1
                continue
            try:
                fresh = secret_reencrypt(token)
            except SecretDecryptError as exc:
                done.unreadable[key] = str(exc)
                continue
            if not dry_run:
                Destination.objects.filter(pk=pk).update(
                    webhook_secret_encrypted=fresh, updated_at=timezone.now()
                )
            done.reencrypted += 1
    return done


@transaction.atomic
def destination_disable(*, destination_id: int, reason: str) -> None:
    destination = Destination.objects.select_for_update().get(pk=destination_id)
    destination.enabled = False
    destination.disabled_reason = reason[:200]
    destination.save(update_fields=["enabled", "disabled_reason", "updated_at"])
    _schedule_sync(destination)


# -- runs -------------------------------------------------------------------------------


def export_run_start(
    *, destination: Destination, mode: str = RunMode.FULL, trigger: str = RunTrigger.MANUAL
) -> ExportRun:
    """A pending run, or ``RunAlreadyActive`` while one is pending or running
    (a partial unique index guarantees it across processes)."""
    if destination.kind == DestinationKind.JSON_FEED:
        raise NotRunnable("a JSON feed is pulled by the tool, it has no runs")
    if not destination.enabled:
        raise NotRunnable(f"destination {destination.key} is disabled")
    _abandoned_runs_fail(destination)
    try:
        with transaction.atomic():
            run = ExportRun.objects.create(destination=destination, mode=mode, trigger=trigger)
    except IntegrityError as exc:
        raise RunAlreadyActive(f"destination {destination.key} has a run in progress") from exc
    return run


# Longer than the run task's hard time limit (tasks.py): a run still active after
# this long lost its worker (or its message), and would block the destination.
ABANDONED_AFTER = timedelta(hours=1)


def _abandoned_runs_fail(destination: Destination) -> None:
    cutoff = timezone.now() - ABANDONED_AFTER
    ExportRun.objects.filter(destination=destination, status__in=ACTIVE_RUN_STATUSES).filter(
        Q(started_at__lt=cutoff) | Q(started_at__isnull=True, created_at__lt=cutoff)
    ).update(
        status=RunStatus.FAILED,
        error="abandoned: still active after an hour (worker lost)",
        finished_at=timezone.now(),
    )


def _previous_outbox_id(destination: Destination) -> int:
    last = (
        ExportRun.objects.filter(destination=destination, status=RunStatus.SUCCEEDED)
        .order_by("-outbox_to")
        .values_list("outbox_to", flat=True)
        .first()
    )
    return int(last or 0)


@dataclass
class Counts:
    profiles: int = 0
    rows: int = 0
    skipped_no_identifier: int = 0
    parts: list[tuple[str, Part]] = field(default_factory=list)


def export_run_execute(run_id: int) -> ExportRun:
    """Execute a pending run (once: a run not pending is returned as it is).

    Full runs export each activated segment's current, consented members;
    incremental runs only the profiles whose membership changed in the outbox
    since the last successful run (``outbox_from`` < id <= ``outbox_to``).
    Segments below their minimum size are left out and listed."""
    with transaction.atomic():
        run = ExportRun.objects.select_for_update().select_related("destination").get(pk=run_id)
        if run.status != RunStatus.PENDING:
            return run
        run.status = RunStatus.RUNNING
        run.started_at = timezone.now()
        run.save(update_fields=["status", "started_at"])
    destination = run.destination
    started = time.monotonic()
    try:
        audiences = destination_audiences(destination)
        run.segments_exported = [s.key for s in audiences.exported]
        run.segments_skipped = [s.key for s in audiences.skipped]
        run.outbox_to = outbox_last_id()
        if run.mode == RunMode.INCREMENTAL:
            run.outbox_from = _previous_outbox_id(destination)
        ids = [s.pk for s in audiences.exported]
        if run.mode == RunMode.FULL and ids:
            total, allowed = audience_counts(destination, ids)
            run.skipped_consent = total - allowed
        counts = _execute(run, destination, audiences.exported)
        _files_record(run, counts.parts)
        run.profiles = counts.profiles
        run.rows = counts.rows
        run.skipped_no_identifier = counts.skipped_no_identifier
        run.files = len(counts.parts)
        run.status = RunStatus.SUCCEEDED
    except Exception as exc:
        # The type only: a database error's text may quote a row (personal data);
        # the run keeps the whole message, for who may see runs in admin.
        logger.error(
            "export run %s of destination %s failed: %s", run.pk, destination.pk, type(exc).__name__
        )
        run.status = RunStatus.FAILED
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
    run.finished_at = timezone.now()
    run.duration_ms = int((time.monotonic() - started) * 1000)
    run.save()
    return run


def _files_record(run: ExportRun, parts: Sequence[tuple[str, Part]]) -> None:
    root = exports_dir()
    ExportFile.objects.bulk_create(
        ExportFile(
            run=run,
            name=name,
            path=str(part.path.relative_to(root)),
            rows=part.rows,
            size=part.size,
            sha256=part.sha256,
        )
        for name, part in parts
    )


def _run_dir(run: ExportRun) -> Path:
    return exports_dir() / run.destination.key / f"run-{run.pk}"


def hashed(destination: Destination, value: Any) -> str:
    """The identifier as the destination receives it. Emails are stored
    normalized (lowercase); other ids are hashed exactly as stored."""
    text = str(value)
    if destination.hashing == Hashing.SHA256:
        return matching.sha256_hex(text)
    return text


def _execute(run: ExportRun, destination: Destination, segments: list[Segment]) -> Counts:
    if destination.kind == DestinationKind.WEBHOOK:
        from .webhooks import webhook_changes_enqueue, webhook_snapshot_enqueue

        if run.mode == RunMode.FULL:
            return webhook_snapshot_enqueue(run, destination, segments)
        return webhook_changes_enqueue(run, destination, segments)
    if destination.kind not in FILE_KINDS:
        raise NotRunnable(destination.kind)
    if destination.kind in (DestinationKind.ADOBE_TARGET, DestinationKind.DYNAMIC_YIELD):
        return _attribute_file(run, destination, segments)
    return _list_files(run, destination, segments)


def _touched(run: ExportRun) -> tuple[int, int] | None:
    return (run.outbox_from, run.outbox_to) if run.mode == RunMode.INCREMENTAL else None


def _attribute_file(run: ExportRun, destination: Destination, segments: list[Segment]) -> Counts:
    """Adobe Target and Dynamic Yield: a row per profile, a column per segment
    (true/false). An incremental run sends the touched profiles' current state."""
    conf = destination.settings
    counts = Counts()
    columns = [f"{conf.get('attribute_prefix', '')}{s.key}" for s in segments]
    id_column = conf["id_column"]
    if destination.kind == DestinationKind.ADOBE_TARGET:
        # Adobe's batch file: the first line is "batch=" and the column names.
        header = ["batch=" + ",".join([id_column, *columns])]
        stem, suffix = "adobe_target_batch", ".csv"
    else:
        header = [",".join([id_column, *columns])]
        stem, suffix = "CRM_data", ".csv"
    writer = SplitWriter(
        directory=_run_dir(run),
        stem=stem,
        suffix=suffix,
        header=header,
        max_rows=conf["max_rows"],
        max_bytes=conf["max_bytes"],
        line_end="\r\n" if destination.kind == DestinationKind.DYNAMIC_YIELD else "\n",
    )
    ids = [s.pk for s in segments]
    if ids:
        queryset = audience_profiles(destination, ids, touched=_touched(run), flags=True)
        fields = ["ident", *(f"in_{sid}" for sid in ids)]
        for chunk in chunked(queryset, *fields, prefetch=True):
            lines = []
            for ident, *flags in chunk:
                if not ident:
                    counts.skipped_no_identifier += 1
                    continue
                lines.append(
                    writer.format_row(
                        [hashed(destination, ident), *("true" if f else "false" for f in flags)]
                    )
                )
            writer.write_lines(lines)
            counts.rows += len(lines)
            counts.profiles += len(lines)
    counts.parts = [(part.name, part) for part in writer.close()]
    return counts


def _json(value: Any) -> dict[str, Any]:
    # jsonb comes as text from a raw cursor (Django parses it in its own fields).
    try:
        parsed = orjson.loads(value) if isinstance(value, str | bytes) else None
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _list_files(run: ExportRun, destination: Destination, segments: list[Segment]) -> Counts:
    """Optimizely, Google and Meta: a list (file parts) per segment. An
    incremental run writes the additions and, separately, the removals."""
    conf = destination.settings
    counts = Counts()
    kind = destination.kind
    contact = kind in MATCH_KINDS
    from django.conf import settings

    region = settings.CDP["PHONE_DEFAULT_REGION"]
    incremental = run.mode == RunMode.INCREMENTAL
    streamed_rows = 0
    for segment in segments:
        writers: dict[bool, SplitWriter] = {}
        for adding in (True, False) if incremental else (True,):
            action = "" if not incremental else ("_add" if adding else "_remove")
            if kind == DestinationKind.OPTIMIZELY:
                stem, suffix, header, as_csv = (
                    f"optimizely_{segment.key}{action}",
                    ".txt",
                    [],
                    False,
                )
            elif kind == DestinationKind.GOOGLE_CUSTOMER_MATCH:
                stem, suffix = f"google_customer_match_{segment.key}{action}", ".csv"
                header, as_csv = [",".join(matching.GOOGLE_HEADER)], True
            else:
                stem, suffix = f"meta_custom_audience_{segment.key}{action}", ".csv"
                header, as_csv = [",".join(matching.META_HEADER)], True
            writers[adding] = SplitWriter(
                directory=_run_dir(run),
                stem=stem,
                suffix=suffix,
                header=header,
                max_rows=conf.get("max_rows", 10**12),
                max_bytes=conf["max_bytes"],
                csv_rows=as_csv,
            )
        queryset = audience_profiles(
            destination, [segment.pk], touched=_touched(run), contact=contact
        )
        fields = ["pk", "traits", "email", "phone"] if contact else ["pk", "ident"]
        if incremental:
            fields.append("member")
        if contact:
            streamed = _matched_rows(
                kind,
                audience_profiles(destination, [segment.pk], touched=_touched(run)),
                queryset,
                fields,
                joined=not incremental,
            )
        else:
            streamed = chunked(queryset, *fields, prefetch=True)
        make = (
            matching.google_row
            if kind == DestinationKind.GOOGLE_CUSTOMER_MATCH
            else matching.meta_row
        )
        for chunk in streamed:
            # Each chunk's lines go to their writer at once (write_lines).
            lines: dict[bool, list[str]] = {True: [], False: []}
            streamed_rows += len(chunk)
            for row in chunk:
                member = bool(row[-1]) if incremental else True
                if contact:
                    done = row[1]
                    if done is None:
                        traits = row[2] if isinstance(row[2], dict) else _json(row[2])
                        values = make(traits, row[3], row[4], region=region)
                        # Neither an email nor a phone: nothing to match on.
                        done = writers[member].format_row(values) if values[0] or values[1] else ""
                    # else normalized and hashed by PostgreSQL (matching_sql).
                    if not done:
                        counts.skipped_no_identifier += 1
                        continue
                    lines[member].append(done)
                else:
                    if not row[1]:
                        counts.skipped_no_identifier += 1
                        continue
                    lines[member].append(hashed(destination, row[1]))
            for adding, batch in lines.items():
                if batch:
                    writers[adding].write_lines(batch)
                    counts.rows += len(batch)
        for adding in sorted(writers, reverse=True):
            counts.parts.extend((part.name, part) for part in writers[adding].close())
    if len(segments) == 1:
        counts.profiles = streamed_rows
    elif segments:
        # Distinct people over all the lists (one count, not a set of a million ids).
        every = audience_profiles(destination, [s.pk for s in segments], touched=_touched(run))
        counts.profiles = every.count()
    return counts


def _matched_rows(
    kind: str,
    audience: QuerySet[Any],
    with_contact: QuerySet[Any],
    fields: Sequence[str],
    *,
    joined: bool,
) -> Iterator[list[tuple[Any, ...]]]:
    """The audience's rows as (pk, line, traits, email, phone[, member]): on
    PostgreSQL ``line`` is the finished row where matching_sql is sure to agree
    with Python (else None, and Python does the row); elsewhere always None.
    ``joined``: the identifiers are joined for all the audience at once (a full
    run), else looked up per profile (an incremental run's few)."""
    if connection.vendor == "postgresql":
        if joined:
            columns = [f for f in fields if f not in ("email", "phone")]
            inner, params = audience.values_list(*columns).query.sql_with_params()
        else:
            columns = list(fields)
            inner, params = with_contact.values_list(*columns).query.sql_with_params()
        yield from chunked_sql(matching_sql.rows_sql(kind, inner, columns), params, prefetch=True)
        return
    for chunk in chunked(with_contact, *fields):
        yield [(row[0], None, *row[1:]) for row in chunk]


EXPIRE_BATCH = 500


def export_files_expire(*, now: datetime | None = None) -> int:
    """Delete the files of runs that finished more than
    ``CDP["EXPORT_FILE_RETENTION_DAYS"]`` days ago (0: never), and the run
    directories left empty; each file's row stays, with ``expired_at``, so the
    run keeps its record and admin shows the file as expired. The number of
    files expired. A file already missing on disk is marked expired too; a file
    that cannot be deleted (an ``OSError``) is logged, keeps ``expired_at`` empty
    and gets ``expire_error`` (shown in admin), does not stop the others, and is
    tried again the next day."""
    from django.conf import settings

    days = int(settings.CDP.get("EXPORT_FILE_RETENTION_DAYS", 30))
    if days <= 0:
        return 0
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    root = exports_dir().resolve()
    expired = failed = 0
    last_pk = 0  # by pk past the previous batch: a file that cannot go blocks none after it
    while True:
        rows = list(
            ExportFile.objects.filter(expired_at__isnull=True, pk__gt=last_pk)
            .filter(
                Q(run__finished_at__lt=cutoff)
                | Q(run__finished_at__isnull=True, run__created_at__lt=cutoff)
            )
            .exclude(run__status__in=ACTIVE_RUN_STATUSES)
            .order_by("pk")
            .values_list("pk", "path")[:EXPIRE_BATCH]
        )
        if not rows:
            break
        last_pk = rows[-1][0]
        directories = set()
        gone: list[int] = []
        errors: dict[int, str] = {}
        for pk, relative in rows:
            target = (root / relative).resolve()
            if root in target.parents:
                try:
                    target.unlink(missing_ok=True)
                except OSError as exc:
                    # The error's kind only: the path names the destination and run.
                    reason = f"{type(exc).__name__} (errno {exc.errno})"
                    logger.warning("export file %d not deleted: %s", pk, reason)
                    errors[pk] = f"{now.date().isoformat()}: {reason}"
                    continue
                directories.add(target.parent)
            gone.append(pk)
        ExportFile.objects.filter(pk__in=gone).update(expired_at=now, expire_error="")
        for pk, error in errors.items():
            ExportFile.objects.filter(pk=pk).update(expire_error=error)
        expired += len(gone)
        failed += len(errors)
        for directory in directories:
            # Up to the exports directory, each directory left empty goes too.
            while directory != root and root in directory.parents:
                try:
                    directory.rmdir()
                except OSError:
                    break
                directory = directory.parent
    _leftover_run_dirs_remove(root, cutoff)
    if expired:
        logger.info("export files expired: %d (retention %d days)", expired, days)
    if failed:
        logger.warning("export files past the retention not deleted: %d (see admin)", failed)
    return expired


def _leftover_run_dirs_remove(root: Path, cutoff: datetime) -> None:
    """What a run left on disk without file rows (a run that failed half-way
    through writing, or whose record was deleted), once it is past the retention
    too: by the run's finish (or creation) time, or, when its record is gone, by
    the newest modification time on disk under its directory. Only directories
    named as ``_run_dir`` names them are looked at."""
    found: dict[int, Path] = {}
    if not root.is_dir():
        return
    for destination_dir in root.iterdir():
        if not destination_dir.is_dir() or destination_dir.is_symlink():
            continue
        for run_dir in destination_dir.glob("run-*"):
            number = run_dir.name.removeprefix("run-")
            if number.isdigit() and run_dir.is_dir() and not run_dir.is_symlink():
                found[int(number)] = run_dir
    if not found:
        return
    runs = ExportRun.objects.filter(pk__in=list(found))
    existing = set(runs.values_list("pk", flat=True))
    keep = set(
        runs.filter(
            Q(status__in=ACTIVE_RUN_STATUSES)
            | Q(finished_at__gte=cutoff)
            | Q(finished_at__isnull=True, created_at__gte=cutoff)
        ).values_list("pk", flat=True)
    )
    for pk, run_dir in found.items():
        if pk in keep:
            continue
        if pk not in existing and not _modified_before(run_dir, cutoff):
            continue  # no run record to date it: its last change on disk does
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            run_dir.parent.rmdir()  # the destination's directory, if now empty


def _modified_before(path: Path, cutoff: datetime) -> bool:
    """Whether ``path`` and everything in it were last changed before ``cutoff``
    (a directory's own mtime moves only when its entries do, not their contents)."""
    latest = 0.0
    try:
        latest = path.stat().st_mtime
        for entry in path.rglob("*"):
            latest = max(latest, entry.lstat().st_mtime)
    except OSError:
        return False  # changing under us: leave it to a later day
    return latest < cutoff.timestamp()


def export_run_scheduled(destination_id: int) -> str:
    destination = Destination.objects.filter(pk=destination_id, enabled=True).first()
    if destination is None:
        return "disabled"
    done = ExportRun.objects.filter(destination=destination, status=RunStatus.SUCCEEDED)
    mode = RunMode.INCREMENTAL if done.exists() else RunMode.FULL
    try:
        run = export_run_start(destination=destination, mode=mode, trigger=RunTrigger.SCHEDULE)
    except (RunAlreadyActive, NotRunnable) as exc:
        logger.info("scheduled run of destination %s not started: %s", destination_id, exc)
        return "skipped"
    return str(export_run_execute(run.pk).status)


def webhooks_push_all() -> int:
    """An incremental run for each enabled webhook destination with outbox
    changes of its segments past its cursor (none otherwise: no empty runs)."""
    from apps.segments.models import MembershipChange

    started = 0
    for destination in Destination.objects.filter(kind=DestinationKind.WEBHOOK, enabled=True):
        segment_ids = list(destination.segments.values_list("pk", flat=True))
        pending = MembershipChange.objects.filter(
            segment_id__in=segment_ids, id__gt=destination.outbox_cursor
        )
        if not segment_ids or not pending.exists():
            continue
        try:
            run = export_run_start(
                destination=destination, mode=RunMode.INCREMENTAL, trigger=RunTrigger.SCHEDULE
            )
        except (RunAlreadyActive, NotRunnable):
            continue
        export_run_execute(run.pk)
        started += 1
    return started


def export_run_enqueue(
    *, destination: Destination, mode: str = RunMode.FULL, trigger: str = RunTrigger.MANUAL
) -> ExportRun:
    """Start a run and hand it to a worker after commit."""
    from .tasks import export_run_execute as execute_task

    run = export_run_start(destination=destination, mode=mode, trigger=trigger)
    transaction.on_commit(lambda: execute_task.delay(run.pk))
    return run
