"""What privacy work (apps/consent: erasure, export, retention) does to events.

Consent is below events (DESIGN.md) and cannot import them; events register here,
from ``EventsConfig.ready()``, into consent's registries (apps/consent/registry.py,
where each contract is written):

- erasers: "events" (the person's events, by profile and, for events not
  processed yet, by the ids they carry; one batch per call) in the erasure's
  events step, run again in its identity step for events a worker processed
  meanwhile; "ids_scrubbed" (her ids blanked on other people's events, one
  statement: the ids have no index) after it in the same step; "rejected_events"
  (refused payloads naming her, one statement) in the rejected step;
- the pending sweeper "events": pending events carrying a suppressed identifier;
- the export's "events" table, after the identifiers;
- retention: "events" by CDP_EVENT_RETENTION_DAYS, "rejected_events" by
  CDP_REJECTED_EVENT_RETENTION_DAYS.

The erase and purge services live here rather than in services.py: nothing but
these registrations calls them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from django.db.models import Case, Q, Value, When

from apps.consent.registry import (
    ErasedPerson,
    PersonalDataEraser,
    RetentionPurger,
    pending_sweepers,
    personal_data_erasers,
    personal_data_providers,
    retention_purgers,
)
from apps.consent.services.ingest import suppressed_rows
from apps.identity.services import identity_rules_load

from .models import Event, RejectedEvent
from .selectors import events_for_export, events_pending_identities
from .services import _json, _storable


def events_erase(
    *,
    profile_ids: Sequence[Any],
    user_ids: Sequence[str] = (),
    anonymous_ids: Sequence[str] = (),
    event_ids: Sequence[int] = (),
    batch_size: int = 5000,
) -> int:
    """Delete one batch of a person's events (erasure); call until it returns 0.

    Events are the person's by profile; those not processed yet have no profile,
    so also by the ids they carry (a processed event carries its profile), and
    those the caller names (``event_ids``). Each is its own indexed query: by
    event_profile_ts_idx; within the pending events only (event_pending_idx is
    partial on processed_at IS NULL, and pending events are few), never a scan of
    every event's user_id; by primary key.
    """
    ids: set[int] = set()
    if profile_ids:
        ids.update(
            Event.objects.filter(profile_id__in=list(profile_ids)).values_list("id", flat=True)[
                :batch_size
            ]
        )
    if len(ids) < batch_size and (user_ids or anonymous_ids):
        carries = Q(user_id__in=list(user_ids)) | Q(anonymous_id__in=list(anonymous_ids))
        carries |= Q(type="alias", previous_id__in=[*user_ids, *anonymous_ids])
        ids.update(
            Event.objects.filter(carries, processed_at__isnull=True).values_list("id", flat=True)[
                : batch_size - len(ids)
            ]
        )
    if len(ids) < batch_size and event_ids:
        ids.update(
            Event.objects.filter(id__in=list(event_ids)).values_list("id", flat=True)[
                : batch_size - len(ids)
            ]
        )
    if not ids:
        return 0
    Event.objects.filter(id__in=list(ids)).delete()
    return len(ids)


def events_scrub_ids(*, user_ids: Sequence[str], anonymous_ids: Sequence[str]) -> int:
    """Blank an erased person's ids wherever they remain on other people's events
    (erasure, after her own events are deleted); the number of events changed.

    One statement, and one scan of the table: the ids have no index, as an index
    would cost every ingested event its upkeep for the sake of a rare erasure.
    """
    users, anons = list(user_ids), list(anonymous_ids)
    either = [*users, *anons]
    if not either:
        return 0

    def blank(column: str, values: list[str]) -> Case:
        return Case(When(**{f"{column}__in": values}, then=Value("")), default=column)

    return Event.objects.filter(
        Q(user_id__in=users) | Q(anonymous_id__in=anons) | Q(previous_id__in=either)
    ).update(
        user_id=blank("user_id", users),
        anonymous_id=blank("anonymous_id", anons),
        previous_id=blank("previous_id", either),
    )


def rejected_events_erase(*, values: Sequence[str]) -> int:
    """Delete refused payloads that mention any of these values (erasure), in any
    letter case and as JSON writes them (escaped quotes, backslashes, \\u escapes)."""
    match = Q()
    for value in values:
        if not value:
            continue
        forms = {value, _json(value)[1:-1], json.dumps(value)[1:-1]}
        # SQLite's LIKE folds ASCII letters only.
        forms |= {f.upper() for f in forms} | {f.lower() for f in forms}
        for form in forms:
            match |= Q(payload__icontains=_storable(form))
        match |= Q(message_id=value)
    if not match:
        return 0
    return RejectedEvent.objects.filter(match).delete()[0]


def events_purge_older_than(*, cutoff: Any, batch_size: int = 10000) -> int:
    """Delete one batch of events received before ``cutoff`` (retention)."""
    ids = list(
        # In id order: the oldest events have the lowest ids, so the primary key
        # index finds a batch without sorting the table.
        Event.objects.filter(received_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:batch_size]
    )
    if ids:
        Event.objects.filter(id__in=ids).delete()
    return len(ids)


def rejected_events_purge_older_than(*, cutoff: Any, batch_size: int = 10000) -> int:
    ids = list(
        RejectedEvent.objects.filter(received_at__lt=cutoff).values_list("id", flat=True)[
            :batch_size
        ]
    )
    if ids:
        RejectedEvent.objects.filter(id__in=ids).delete()
    return len(ids)


def events_pending_suppressed_erase() -> int:
    """Delete unprocessed events that carry a suppressed identifier: accepted before
    the person's identifiers were suppressed (or by a process whose cache did not
    know yet), they would otherwise rebuild the person when processed.

    Read without locks (a broker outage may have left a large backlog, and locking
    all of it would stall the workers); only the hits are locked, by their DELETE,
    which waits for a worker that holds one. Processing itself drops events naming
    a suppressed identifier, so only a worker that read the list just before the
    entries were written can race this, and what it attaches joins her profile
    (her identifiers name it), which the identity step erases."""
    rules = identity_rules_load()
    deleted, after = 0, 0
    while True:
        rows = events_pending_identities(after_id=after, limit=1000)
        if not rows:
            return deleted
        after = rows[-1]["id"]
        hit = suppressed_rows(rows, rules)
        if hit:
            deleted += events_erase(
                profile_ids=[], event_ids=[rows[i]["id"] for i in hit], batch_size=len(hit)
            )


# --- Registrations --------------------------------------------------------------


def _erase_events(person: ErasedPerson, *, batch_size: int) -> int:
    return events_erase(
        profile_ids=person.profile_ids,
        user_ids=person.user_ids,
        anonymous_ids=person.anonymous_ids,
        batch_size=batch_size,
    )


def _scrub_ids(person: ErasedPerson, *, batch_size: int) -> int:
    # Her ids on other people's events (her device, used by someone else whose
    # events could not join her profile): the events are theirs, the ids hers.
    return events_scrub_ids(user_ids=person.user_ids, anonymous_ids=person.anonymous_ids)


def _erase_rejected(person: ErasedPerson, *, batch_size: int) -> int:
    return rejected_events_erase(values=person.texts)


def _export_events(profile_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    return events_for_export(profile_ids=profile_ids)


personal_data_erasers.register(
    "events", PersonalDataEraser(erase=_erase_events, step="events", meanwhile=True)
)
# After the person's own events are gone (order 10): what is left of her ids is
# on other people's events.
personal_data_erasers.register(
    "ids_scrubbed", PersonalDataEraser(erase=_scrub_ids, step="events", batched=False), order=10
)
personal_data_erasers.register(
    "rejected_events", PersonalDataEraser(erase=_erase_rejected, step="rejected", batched=False)
)
pending_sweepers.register("events", events_pending_suppressed_erase)
# Between consent's "identifiers" (-40) and "consent" (-20) tables, as before.
personal_data_providers.register("events", _export_events, order=-30)
retention_purgers.register(
    "events", RetentionPurger(purge=events_purge_older_than, days_setting="EVENT_RETENTION_DAYS")
)
retention_purgers.register(
    "rejected_events",
    RetentionPurger(
        purge=rejected_events_purge_older_than, days_setting="REJECTED_EVENT_RETENTION_DAYS"
    ),
    order=10,
)
