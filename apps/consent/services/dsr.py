"""Data-subject requests: creation with the legal deadline, the status workflow."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.common.exceptions import ApplicationError
from apps.consent.deadlines import MAX_EXTENSION_MONTHS, due_date
from apps.consent.models import (
    OPEN_STATUSES,
    DataSubjectRequest,
    RequestEvent,
    RequestStatus,
    RequestType,
)
from apps.consent.selectors import purpose_rule
from apps.identity.selectors import ExternalIdError, parse_external_id, profile_get_by_external_id
from apps.identity.services import identity_rules_load, profile_traits_rectify

from .consent import consent_statements_append

logger = logging.getLogger(__name__)

# Which status may follow which.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    RequestStatus.RECEIVED: (RequestStatus.VERIFIED, RequestStatus.REJECTED),
    RequestStatus.VERIFIED: (
        RequestStatus.IN_PROGRESS,
        RequestStatus.COMPLETED,
        RequestStatus.REJECTED,
    ),
    RequestStatus.IN_PROGRESS: (RequestStatus.COMPLETED, RequestStatus.REJECTED),
    RequestStatus.COMPLETED: (),
    RequestStatus.REJECTED: (),
}


class RequestRefused(ApplicationError):
    pass


# The request types each processing service works on (``_working``).
RECTIFY_TYPES: tuple[str, ...] = (RequestType.RECTIFICATION,)
OBJECT_TYPES: tuple[str, ...] = (RequestType.OBJECTION, RequestType.RESTRICTION)
EXPORT_TYPES: tuple[str, ...] = (RequestType.ACCESS, RequestType.PORTABILITY)
EXPORT_STATUSES: tuple[str, ...] = (
    RequestStatus.VERIFIED,
    RequestStatus.IN_PROGRESS,
    RequestStatus.COMPLETED,
)


# GDPR applies from this day; a request received before it is a typing error.
EARLIEST_RECEIVED = datetime(2018, 5, 25, tzinfo=UTC)


def dsr_subject_clean(subject: str) -> str:
    """The subject, trimmed, once it is an external id that can name someone: a
    known type, and a value that type accepts (a UUID for ``id:``, an email
    address for ``email:``...). Raises RequestRefused otherwise."""
    subject = subject.strip()
    rules = identity_rules_load()
    try:
        kind, value = parse_external_id(subject, rules)
    except ExternalIdError as exc:
        raise RequestRefused(f"subject: {exc}") from exc
    if kind == "id":
        try:
            uuid.UUID(value)
        except ValueError:
            raise RequestRefused("subject: id: takes a profile UUID.") from None
    elif rules.normalize(kind, value) is None:
        raise RequestRefused(f"subject: this is not a usable {kind} value.")
    return subject


def dsr_received_at_check(received: datetime) -> None:
    if received > timezone.now() + timedelta(minutes=5):
        raise RequestRefused("received_at is in the future.")
    if received < EARLIEST_RECEIVED:
        raise RequestRefused("received_at is before the GDPR applied (25 May 2018).")


@transaction.atomic
def dsr_create(
    *,
    type: str,
    subject: str,
    received_at: datetime | None = None,
    details: str = "",
    actor: Any = None,
) -> DataSubjectRequest:
    if type not in RequestType.values:
        raise RequestRefused(f"Unknown request type {type!r}.")
    received = received_at or timezone.now()
    dsr_received_at_check(received)
    request = DataSubjectRequest(
        type=type,
        subject=dsr_subject_clean(subject),
        received_at=received,
        due_date=due_date(timezone.localdate(received)),
        details=details,
        created_by=actor,
    )
    request.full_clean()
    request.save()
    RequestEvent.objects.create(
        request=request, actor=actor, action="created", to_status=request.status
    )
    logger.info("data-subject request %s (%s) received", request.id, type)
    return request


def dsr_transition_check(
    *, request: DataSubjectRequest, status: str, note: str | None = None
) -> None:
    """Raise RequestRefused unless ``request`` may move to ``status`` (with ``note``;
    None leaves the note out of the check, to ask whether the move is offered)."""
    if status not in TRANSITIONS.get(request.status, ()):
        allowed = ", ".join(TRANSITIONS.get(request.status, ())) or "none (it is closed)"
        raise RequestRefused(
            f"A {request.get_status_display().lower()} request cannot become {status}; "
            f"allowed: {allowed}."
        )
    if status == RequestStatus.REJECTED and note is not None and not note.strip():
        raise RequestRefused("Say why the request is rejected (the person must be told).")
    if (
        status == RequestStatus.COMPLETED
        and request.type == RequestType.ERASURE
        and not request.erasure_summary
    ):
        raise RequestRefused("An erasure request completes when the erasure has run.")


@transaction.atomic
def dsr_transition(
    *, request: DataSubjectRequest, status: str, actor: Any = None, note: str = ""
) -> DataSubjectRequest:
    request = DataSubjectRequest.objects.select_for_update().get(pk=request.pk)
    dsr_transition_check(request=request, status=status, note=note)
    previous = request.status
    request.status = status
    if status in (RequestStatus.COMPLETED, RequestStatus.REJECTED):
        request.completed_at = timezone.now()
        request.progress = 100 if status == RequestStatus.COMPLETED else request.progress
    request.save()
    RequestEvent.objects.create(
        request=request,
        actor=actor,
        action="status",
        from_status=previous,
        to_status=status,
        note=note,
    )
    return request


def dsr_extend_check(
    *, request: DataSubjectRequest, months: int | None = None, reason: str | None = None
) -> None:
    """Raise RequestRefused unless ``request`` may be extended by ``months`` with
    ``reason``. None leaves that argument out: with neither, whether the request
    can be extended at all (by one month, with some reason)."""
    if request.status not in OPEN_STATUSES:
        raise RequestRefused("Only an open request can be extended.")
    total = request.extension_months + (1 if months is None else months)
    if (months is not None and months < 1) or total > MAX_EXTENSION_MONTHS:
        raise RequestRefused(
            f"The deadline can be extended by {MAX_EXTENSION_MONTHS} months at most in all "
            f"(already extended by {request.extension_months})."
        )
    if reason is not None and not reason.strip():
        raise RequestRefused("An extension needs a reason.")
    if timezone.localdate() > request.original_due_date:
        raise RequestRefused(
            "The first month after receipt has passed (it ended on "
            f"{request.original_due_date.isoformat()}): the deadline can only be extended, "
            "and the person told why, within it (Art. 12(3))."
        )


@transaction.atomic
def dsr_extend(
    *, request: DataSubjectRequest, months: int, reason: str, actor: Any = None
) -> DataSubjectRequest:
    """Extend the deadline by up to two further months in all (Art. 12(3)), counted
    from the original due date (``deadlines``). The reason is recorded; the
    extension, like telling the person, must come within the first month, so a
    further extension after it is refused too."""
    request = DataSubjectRequest.objects.select_for_update().get(pk=request.pk)
    dsr_extend_check(request=request, months=months, reason=reason)
    total = request.extension_months + months
    before = request.due_date
    request.extension_months = total
    request.extension_reason = "\n".join(filter(None, [request.extension_reason, reason.strip()]))
    request.due_date = due_date(timezone.localdate(request.received_at), total)
    request.save()
    RequestEvent.objects.create(
        request=request,
        actor=actor,
        action="extended",
        note=f"{before.isoformat()} -> {request.due_date.isoformat()}: {reason.strip()}",
    )
    return request


def dsr_export_check(*, request: DataSubjectRequest) -> None:
    """Raise RequestRefused unless the subject's data may be exported for ``request``."""
    if request.type not in EXPORT_TYPES:
        raise RequestRefused("Only access and portability requests have an export.")
    if request.status not in EXPORT_STATUSES:
        raise RequestRefused("Verify the requester's identity before exporting.")


def dsr_erase_check(*, request: DataSubjectRequest) -> None:
    """Raise RequestRefused unless the erasure of ``request`` may start (the one
    rule ``erasure_start``, the API and the admin apply)."""
    if request.type != RequestType.ERASURE:
        raise RequestRefused("Only an erasure request erases.")
    if request.status != RequestStatus.VERIFIED:
        raise RequestRefused("Verify the requester's identity before erasing (status: verified).")


def dsr_erasure_stopped(request: DataSubjectRequest) -> bool:
    """An erasure in progress whose step failed so often that the sweep no longer
    retries it: it waits for an administrator to resume it."""
    # erasure.py builds on this module (it imports dsr_transition), so its
    # constant is imported here, when called.
    from .erasure import MAX_STEP_FAILURES

    return (
        request.type == RequestType.ERASURE
        and request.status == RequestStatus.IN_PROGRESS
        and int((request.work_state or {}).get("failures", 0)) >= MAX_STEP_FAILURES
    )


def _allowed(check: Any, **kwargs: Any) -> bool:
    try:
        check(**kwargs)
    except RequestRefused:
        return False
    return True


@dataclass(frozen=True)
class DsrActions:
    """What may be done with a request now, as the services decide it: the admin
    offers exactly these, and the services refuse the rest with their message."""

    next_statuses: tuple[str, ...]
    extension_months: tuple[int, ...]  # the extensions still possible, in months
    can_erase: bool
    can_resume: bool
    can_rectify: bool
    can_object: bool
    can_export: bool


def dsr_actions(*, request: DataSubjectRequest) -> DsrActions:
    stopped = dsr_erasure_stopped(request)
    return DsrActions(
        # An erasure moves on by running (``erasure_start``), not by hand.
        next_statuses=tuple(
            s
            for s in TRANSITIONS.get(request.status, ())
            if not (request.type == RequestType.ERASURE and s == RequestStatus.IN_PROGRESS)
            and _allowed(dsr_transition_check, request=request, status=s)
        ),
        extension_months=tuple(
            m
            for m in range(1, MAX_EXTENSION_MONTHS + 1)
            if _allowed(dsr_extend_check, request=request, months=m)
        ),
        can_erase=_allowed(dsr_erase_check, request=request),
        can_resume=stopped,
        can_rectify=request.type in RECTIFY_TYPES,
        can_object=request.type in OBJECT_TYPES,
        can_export=_allowed(dsr_export_check, request=request),
    )


def dsr_progress(*, request_id: Any, progress: int, note: str) -> None:
    DataSubjectRequest.objects.filter(pk=request_id).update(
        progress=max(0, min(100, progress)), progress_note=note[:200], updated_at=timezone.now()
    )


def dsr_deadline_report(*, today: date | None = None, soon_days: int = 7) -> dict[str, int]:
    """Counts of open requests that are overdue or due soon (for the beat task)."""
    today = today or timezone.localdate()
    open_requests = DataSubjectRequest.objects.filter(status__in=OPEN_STATUSES)
    return {
        "open": open_requests.count(),
        "overdue": open_requests.filter(due_date__lt=today).count(),
        "due_soon": open_requests.filter(
            due_date__gte=today, due_date__lte=today + timedelta(days=soon_days)
        ).count(),
    }


def _subject_profile_id(request: DataSubjectRequest) -> Any:
    profile = profile_get_by_external_id(external_id=request.subject)
    if profile is None:
        raise RequestRefused("No profile is held for this subject.")
    return profile.id


def _working(request: DataSubjectRequest, types: tuple[str, ...], actor: Any) -> DataSubjectRequest:
    request = DataSubjectRequest.objects.select_for_update().get(pk=request.pk)
    if request.type not in types:
        raise RequestRefused(f"This is a {request.get_type_display()} request.")
    if request.status == RequestStatus.VERIFIED:
        request = dsr_transition(request=request, status=RequestStatus.IN_PROGRESS, actor=actor)
    if request.status != RequestStatus.IN_PROGRESS:
        raise RequestRefused("Verify the requester's identity first (status: verified).")
    return request


@transaction.atomic
def dsr_rectify(
    *, request: DataSubjectRequest, traits: dict[str, Any], actor: Any = None
) -> list[str]:
    """Apply a rectification: correct the subject's traits (None removes one)."""
    request = _working(request, RECTIFY_TYPES, actor)
    changed = profile_traits_rectify(profile_id=_subject_profile_id(request), changes=traits)
    # The trail names what changed, not the values (they are personal data).
    RequestEvent.objects.create(
        request=request,
        actor=actor,
        action="rectified",
        note="traits corrected: " + (", ".join(changed) or "none (already as asked)"),
    )
    return changed


@transaction.atomic
def dsr_object(*, request: DataSubjectRequest, purposes: list[str], actor: Any = None) -> list[str]:
    """Apply an objection or restriction: the subject's data is no longer used
    for these purposes (a denial in the consent log, which every use checks)."""
    request = _working(request, OBJECT_TYPES, actor)
    if not purposes:
        raise RequestRefused("Name the purposes the person objects to.")
    rules = [purpose_rule(key) for key in purposes]
    profile_id = _subject_profile_id(request)
    consent_statements_append(
        statements=[
            {
                "profile_id": profile_id,
                "purpose": rule,
                "status": "denied",
                "source": "admin",
                "method": f"{request.get_type_display()} request {str(request.pk)[:8]}",
                "entered_by": actor,
            }
            for rule in rules
        ]
    )
    keys = sorted(rule.key for rule in rules)
    RequestEvent.objects.create(
        request=request, actor=actor, action="objection recorded", note=", ".join(keys)
    )
    return keys
