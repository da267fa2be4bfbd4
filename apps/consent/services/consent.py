"""Writing consent: append a statement to the log, keep the derived state."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.common.exceptions import ApplicationError
from apps.consent.hashing import ip_hash
from apps.consent.models import ConsentRecord, ConsentState, ConsentStatus
from apps.consent.selectors import PurposeRule, consent_config, purpose_rule
from apps.identity.services import profiles_lock_live

logger = logging.getLogger(__name__)


class ConsentRefused(ApplicationError):
    pass


def _lock_profiles(profile_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Serialize consent writers per profile until the transaction ends; each id ->
    its live profile's id (a merge may have absorbed it meanwhile).

    The state is rebuilt from the log (read, delete, insert): two writers of one
    profile must not interleave, or the second inserts a state the first already
    inserted (an IntegrityError, a 500 at ingestion) or keeps a stale one. The lock
    is the profile row's, taken as merges and resolution take it (FOR UPDATE, id
    order): a lock of our own would be taken in the other order by a merge, which
    holds the rows when it moves the log, and the two would deadlock.
    """
    return profiles_lock_live(profile_ids=profile_ids)


@transaction.atomic
def _state_refresh(*, profile_ids: Iterable[uuid.UUID]) -> None:
    """Rebuild the current state of these profiles from their logs."""
    ids = list(set(profile_ids))
    if not ids:
        return
    _lock_profiles(ids)
    config = consent_config()
    latest: dict[tuple[uuid.UUID, int], ConsentRecord] = {}
    for record in ConsentRecord.objects.filter(profile_id__in=ids).order_by("given_at", "id"):
        latest[(record.profile_id, record.purpose_id)] = record
    ConsentState.objects.filter(profile_id__in=ids).delete()
    states = []
    for (profile_id, purpose_id), record in latest.items():
        rule = config.by_id.get(purpose_id) or consent_config(fresh=True).by_id.get(purpose_id)
        expires = None
        if rule and rule.expiry_days is not None and record.status == ConsentStatus.GRANTED:
            expires = record.given_at + timedelta(days=rule.expiry_days)
        states.append(
            ConsentState(
                profile_id=profile_id,
                purpose_id=purpose_id,
                status=record.status,
                given_at=record.given_at,
                expires_at=expires,
                record=record,
            )
        )
    ConsentState.objects.bulk_create(states)


def _build(
    *,
    profile_id: uuid.UUID,
    purpose: str | PurposeRule,
    status: str,
    source: str,
    given_at: datetime | None = None,
    method: str = "",
    notice_version: str | None = None,
    ip: str | None = None,
    user_agent: str = "",
    page_url: str = "",
    tcf_string: str = "",
    gcm_flags: dict[str, Any] | None = None,
    event_message_id: str = "",
    entered_by: Any = None,
) -> ConsentRecord:
    rule = purpose_rule(purpose)
    if status not in ConsentStatus.values:
        raise ConsentRefused(f"Unknown consent status {status!r}.")
    if rule.required and status != ConsentStatus.GRANTED:
        raise ConsentRefused(
            f"Purpose {rule.key!r} is required (legal basis is not consent); "
            "it cannot be denied or withdrawn. Use an objection or erasure request."
        )
    now = timezone.now()
    given = given_at or now
    if given > now + timedelta(minutes=5):
        raise ConsentRefused("given_at is in the future.")
    version = rule.notice_version if notice_version is None else notice_version
    return ConsentRecord(
        profile_id=profile_id,
        origin_profile_id=profile_id,
        purpose_id=rule.id,
        status=status,
        given_at=given,
        source=source,
        method=method[:100],
        notice_version=version[:50],
        notice_hash=rule.notice_hash if version == rule.notice_version else "",
        ip_hash=ip_hash(ip),
        user_agent=user_agent[:500],
        page_url=page_url[:2000],
        tcf_string=tcf_string,
        gcm_flags=gcm_flags or {},
        event_message_id=event_message_id[:255],
        entered_by=entered_by,
    )


@transaction.atomic
def consent_record(**statement: Any) -> ConsentRecord:
    """Append one statement to the log; it takes effect at once.

    Granting and withdrawing are the same call with a different status. Keyword
    arguments: profile_id, purpose, status, source, and optionally given_at, method,
    notice_version (default: the purpose's current one), ip (kept as a keyed hash),
    user_agent, page_url, tcf_string, gcm_flags, event_message_id, entered_by.
    """
    return consent_statements_append(statements=[statement])[0]


@transaction.atomic
def consent_statements_append(
    *, statements: list[dict[str, Any]], skip_missing: bool = False
) -> list[ConsentRecord]:
    """Append several statements at once (one insert, one state refresh).

    A statement about a profile that no longer exists (erased meanwhile) is
    refused, or with ``skip_missing`` (ingestion: one person's erasure must not
    cost a batch of other people's events) left out.
    """
    records = [_build(**s) for s in statements]
    live = _lock_profiles({r.profile_id for r in records})
    if skip_missing:
        records = [r for r in records if r.profile_id in live]
    for record in records:
        if record.profile_id not in live:
            raise ConsentRefused("The profile no longer exists (erased or never stored).")
        # Said of a profile a merge absorbed meanwhile: it joins the survivor's log,
        # keeping where it was said (origin) for a split.
        record.profile_id = live[record.profile_id]
    ConsentRecord.objects.bulk_create(records)
    _state_refresh(profile_ids=[r.profile_id for r in records])
    logger.debug("%d consent statements recorded", len(records))
    return records


def consent_grant(*, profile_id: uuid.UUID, purpose: str, **kwargs: Any) -> ConsentRecord:
    return consent_record(
        profile_id=profile_id, purpose=purpose, status=ConsentStatus.GRANTED, **kwargs
    )


def consent_withdraw(*, profile_id: uuid.UUID, purpose: str, **kwargs: Any) -> ConsentRecord:
    return consent_record(
        profile_id=profile_id, purpose=purpose, status=ConsentStatus.WITHDRAWN, **kwargs
    )


def consent_reassign_profile(*, from_profile_id: uuid.UUID, to_profile_id: uuid.UUID) -> int:
    """A merge: the absorbed profile's log joins the survivor's (both are kept).

    The survivor's state is then the latest statement of either person-record.
    """
    moved = ConsentRecord.objects.filter(profile_id=from_profile_id).update(
        profile_id=to_profile_id
    )
    if moved:
        _state_refresh(profile_ids=[from_profile_id, to_profile_id])
    return moved


def consent_reassign_profiles(*, mapping: dict[uuid.UUID, uuid.UUID]) -> int:
    """Many merges at once (old profile id -> survivor id)."""
    if not mapping:
        return 0
    by_new: dict[uuid.UUID, list[uuid.UUID]] = {}
    for old, new in mapping.items():
        by_new.setdefault(new, []).append(old)
    moved = 0
    holders = set(
        ConsentRecord.objects.filter(profile_id__in=list(mapping)).values_list(
            "profile_id", flat=True
        )
    )
    for new, olds in by_new.items():
        olds = [o for o in olds if o in holders]
        if olds:
            moved += ConsentRecord.objects.filter(profile_id__in=olds).update(profile_id=new)
    if moved:
        _state_refresh(profile_ids=[*holders, *(mapping[h] for h in holders)])
    return moved


def consent_restore_after_split(
    *,
    split_profile_id: uuid.UUID,
    origin_profile_ids: Iterable[uuid.UUID],
    from_profile_id: uuid.UUID,
) -> int:
    """A split: statements made for the split-out profile (or for profiles it had
    absorbed before) go back to it."""
    origins = list(origin_profile_ids)
    moved = ConsentRecord.objects.filter(
        profile_id=from_profile_id, origin_profile_id__in=origins
    ).update(profile_id=split_profile_id)
    if moved:
        _state_refresh(profile_ids=[split_profile_id, from_profile_id])
    return moved


__all__ = [
    "ConsentRefused",
    "consent_grant",
    "consent_reassign_profile",
    "consent_reassign_profiles",
    "consent_record",
    "consent_restore_after_split",
    "consent_statements_append",
    "consent_withdraw",
]
