"""Deciding what a profile sees in each placement.

Per request: the mapping from this process's cache (mapping.py), and one query
(``profile_state_for``, PostgreSQL) from the external id to everything a decision
reads about the profile: its id and whether it was merged (the identifier index),
its consent for personalization (the consent app's ``profiles_for_use``, as an
EXISTS), its current segment ids (an array from the partial index of current
memberships) and its holdout key. Nothing over events. Exposures go to a buffer
(exposures.py). Each of those was its own round trip before (four to five a
decision, 1-2 ms each on a loaded machine); on SQLite, for a merged profile and
for ``id:<uuid>`` the same facts are read one by one (``profile_state_load``),
and a property test holds the two readers to the same answers.

For each placement, the first of its rules (priority high to low, then lowest
id) that is inside its date window and names an activated segment the profile is
in now, wins; a held-out profile (holdouts.py) gets the default with
``holdout: true``. No rule, an unknown profile, or no consent: the default.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Exists, F, OuterRef, Subquery
from django.utils import timezone

from apps.consent.selectors import (
    consent_cache_seconds,
    consent_config,
    consent_refreshed_elsewhere,
    may_use,
    profiles_for_use,
)
from apps.identity.models import Identifier, Profile
from apps.identity.selectors import parse_external_id, profile_get_by_external_id
from apps.identity.services import IdentityRules, identity_rules_load
from apps.segments.models import Membership

from .exposures import PendingExposure, exposures_record
from .holdouts import holdout_key, is_held_out
from .mapping import PlacementEntry, RuleEntry, mapping_current
from .models import HoldoutKey
from .refresher import max_age, on_running, refresh_task

FALLBACK = "fallback"
NO_CONSENT = "no_consent"


@dataclass(frozen=True, slots=True)
class Decision:
    placement: str
    variant: str | None = None
    payload: dict[str, Any] | None = None
    holdout: bool = False
    rule: RuleEntry | None = None
    reason: str = FALLBACK  # when no rule: "fallback" or "no_consent"
    error: str | None = None

    def as_json(self, *, public: bool = False) -> dict[str, Any]:
        """The API's entry; ``public`` (publishable keys) leaves out which segment
        matched and whether consent was missing: a browser learns its content, not
        how it is classified."""
        if self.error is not None:
            return {"error": self.error}
        reason: Any
        if self.rule is None:
            # A browser's key may not tell whether someone consented either.
            reason = FALLBACK if public else self.reason
        elif public:
            reason = {"rule": self.rule.id}
        else:
            reason = {"rule": self.rule.id, "segment": self.rule.segment_key}
        return {
            "variant": self.variant,
            "payload": self.payload,
            "holdout": self.holdout,
            "reason": reason,
        }


def _default(entry: PlacementEntry, **kwargs: Any) -> Decision:
    default = entry.default
    return Decision(
        placement=entry.key,
        variant=default.key if default else None,
        payload=default.payload if default else None,
        **kwargs,
    )


_rules_lock = threading.Lock()
_rules: tuple[float, IdentityRules] | None = None


def _rules_seconds() -> float:
    return float(settings.CDP.get("DECIDE_MAPPING_CHECK_MS", 500)) / 1000.0


def _identity_rules() -> IdentityRules:
    """The identity rules (identifier types, normalization), kept per process for
    DECIDE_MAPPING_CHECK_MS: loading them is three queries, more than the decision.
    Reloaded by the refresher (refresher.py), here only past its hard bound."""
    bound = max_age(_rules_seconds())
    cached = _rules
    if cached is not None and time.monotonic() - cached[0] < bound:
        return cached[1]
    return identity_rules_refresh()


def identity_rules_refresh() -> IdentityRules:
    global _rules
    with _rules_lock:
        now = time.monotonic()
        rules = identity_rules_load()
        _rules = (now, rules)
        return rules


def _consent_refresh() -> None:
    """The consent configuration reloaded, and the decision's SQL for it built,
    off the request path (the SQL costs 0.85 ms of CPU to build)."""
    config = consent_config(fresh=True)
    if connection.vendor == "postgresql":
        _state_template(config)


refresh_task("identity rules", _rules_seconds, identity_rules_refresh)
refresh_task("consent", consent_cache_seconds, _consent_refresh)
on_running(consent_refreshed_elsewhere)


def profile_id_for(external_id: str) -> uuid.UUID | None:
    """The live profile an external id names, or None (raises ExternalIdError).

    What ``profile_get_by_external_id`` answers, in one query on the identifier
    index (profile id and whether it was merged) rather than fetching the profile;
    a merged one is followed through the selector (rare)."""
    rules = _identity_rules()
    kind, value = parse_external_id(external_id, rules)
    if kind == "id":
        profile = profile_get_by_external_id(external_id=external_id)
        return profile.pk if profile else None
    normalized = rules.normalize(kind, value)
    if normalized is None:
        return None
    row = (
        Identifier.objects.filter(type=kind, value=normalized)
        .values_list("profile_id", "profile__merged_into_id")
        .first()
    )
    if row is None:
        return None
    if row[1] is None:
        return row[0]
    profile = profile_get_by_external_id(external_id=f"id:{row[0]}")
    return profile.pk if profile else None


def profile_segment_ids(profile_id: uuid.UUID) -> set[int]:
    return set(
        Membership.objects.filter(profile_id=profile_id, exited_at__isnull=True).values_list(
            "segment_id", flat=True
        )
    )


@dataclass(frozen=True, slots=True)
class ProfileState:
    """What a decision reads about a live profile. ``segment_ids`` and
    ``holdout_key`` are None when not read yet (read when a rule needs them)."""

    profile_id: uuid.UUID
    consented: bool
    segment_ids: frozenset[int] | None = None
    holdout_key: str | None = None


def profile_state_load(profile_id: uuid.UUID, *, full: bool = False) -> ProfileState:
    """The facts one by one (consent now; segments and holdout key later, when a
    rule needs them, unless ``full``)."""
    consented = may_use(profile_id, "personalization")
    if not full:
        return ProfileState(profile_id=profile_id, consented=consented)
    return ProfileState(
        profile_id=profile_id,
        consented=consented,
        segment_ids=frozenset(profile_segment_ids(profile_id)),
        holdout_key=holdout_key(profile_id),
    )


def _state_queryset(kind: str, normalized: str) -> Any:
    from django.contrib.postgres.expressions import ArraySubquery

    pid = OuterRef("profile_id")
    return (
        Identifier.objects.filter(type=kind, value=normalized)
        .annotate(
            _merged=F("profile__merged_into_id"),
            _consented=Exists(profiles_for_use(Profile.objects.filter(pk=pid), "personalization")),
            _segments=ArraySubquery(
                Membership.objects.filter(profile_id=pid, exited_at__isnull=True).values(
                    "segment_id"
                )
            ),
            _holdout_key=Subquery(HoldoutKey.objects.filter(profile_id=pid).values("key")[:1]),
        )
        .values_list("profile_id", "_merged", "_consented", "_segments", "_holdout_key")[:1]
    )


# Placeholders for the identifier in the cached SQL: a NUL never reaches a query
# (parse_external_id refuses it), so they cannot be confused with a real value.
_KIND, _VALUE = "\x00kind", "\x00value"
# (consent configuration it was built for, SQL, parameters, where the kind and the
# value go). Building the query with the ORM costs 0.85 ms of CPU, running it
# 0.25 ms: the SQL is built once per consent configuration (consent_config() is
# a new object whenever the consent app reloads it) and reused with new values.
_template: tuple[object, str, tuple[Any, ...], int, int] | None = None


def _state_template(config: object) -> tuple[object, str, tuple[Any, ...], int, int] | None:
    """The cached SQL for this consent configuration (built now if it is not the
    one cached), or None when it cannot be reused (a consent expiry)."""
    global _template
    template = _template
    if template is not None and template[0] is config:
        return template
    sql, params = _state_queryset(_KIND, _VALUE).query.sql_with_params()
    if any(isinstance(p, datetime) for p in params):
        return None  # a consent expiry compares with the clock
    params = tuple(params)
    template = (config, sql, params, params.index(_KIND), params.index(_VALUE))
    _template = template
    return template


def _state_row(kind: str, normalized: str) -> tuple[Any, ...] | None:
    template = _state_template(consent_config())
    if template is None:
        sql, params = _state_queryset(kind, normalized).query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    _config, sql, fixed, at_kind, at_value = template
    values = list(fixed)
    values[at_kind], values[at_value] = kind, normalized
    try:
        return _prepared_fetch(sql, values, prepare=True)
    except DatabaseError as exc:
        if connection.in_atomic_block or not _retryable(exc):
            raise
    # The connection was lost (a PostgreSQL or PgBouncer restart since this
    # thread's last query: no health check ran first, see _prepared_fetch) or
    # the server forgot the prepared statement (PgBouncer without
    # max_prepared_statements, or a new server behind it): once more on a new
    # connection, not prepared this time.
    connection.close()
    return _prepared_fetch(sql, values, prepare=False)


def _retryable(exc: DatabaseError) -> bool:
    cause = exc.__cause__
    if isinstance(
        cause, psycopg.errors.InvalidSqlStatementName | psycopg.errors.DuplicatePreparedStatement
    ):
        return True
    raw = connection.connection
    return isinstance(cause, psycopg.OperationalError) and (raw is None or raw.closed or raw.broken)


def _prepared_fetch(sql: str, values: list[Any], *, prepare: bool) -> tuple[Any, ...] | None:
    """One row of ``sql``, asked to be prepared (per connection: psycopg prepares
    it on first use), so PostgreSQL does not plan it again for every decision
    (0.17 ms of its CPU); Django's cursors bind on the client, which cannot
    prepare. psycopg prepares only where the connection's ``prepare_threshold``
    is not None, and Django sets it to None unless ``OPTIONS`` sets it (for
    poolers): by default the statement is planned each time. Errors as Django's,
    which marks the connection for closing at the request's end.

    **No health check first** (the first try): Django's CONN_HEALTH_CHECKS costs
    a ``SELECT 1`` round trip before a request's first query, as much again as
    this read-only query's own trip, on every decision. A connection a restart
    broke fails the query instead, and ``_state_row`` runs it once more on a new
    connection: what the health check would have done, paid only when it
    happens. The retry (``prepare=False``) checks first, as Django's cursors do.
    Once the query has run, the connection counts as checked for the rest of the
    request (a later ORM query in it skips its own ``SELECT 1``)."""
    if not prepare:
        connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, values, prepare=prepare)
        row = cursor.fetchone()
    connection.health_check_done = True  # type: ignore[attr-defined]
    return row


def profile_state_for(external_id: str) -> ProfileState | None:
    """The state of the live profile an external id names, or None (unknown);
    raises ExternalIdError. One query on PostgreSQL (module doc)."""
    rules = _identity_rules()
    kind, value = parse_external_id(external_id, rules)
    if kind != "id" and connection.vendor == "postgresql":
        normalized = rules.normalize(kind, value)
        if normalized is None:
            return None
        row = _state_row(kind, normalized)
        if row is None:
            return None
        pid, merged, consented, segments, key = row
        if merged is None:
            return ProfileState(
                profile_id=pid,
                consented=bool(consented),
                segment_ids=frozenset(segments or ()),
                holdout_key=key or str(pid),
            )
    profile_id = profile_id_for(external_id)
    return None if profile_id is None else profile_state_load(profile_id)


def decide(
    *,
    profile_id: uuid.UUID | None = None,
    placements: Sequence[str],
    now: datetime | None = None,
    record: bool = True,
    state: ProfileState | None = None,
) -> dict[str, Decision]:
    """Decisions for a live profile (None: unknown), one per placement key; with
    ``state`` (``profile_state_for``), from what it holds."""
    now = now or timezone.now()
    if state is None and profile_id is not None:
        state = profile_state_load(profile_id)
    profile_id = state.profile_id if state is not None else None
    snap = mapping_current()
    known = [snap.placements[k] for k in dict.fromkeys(placements) if k in snap.placements]
    decisions: dict[str, Decision] = {
        k: Decision(placement=k, error=f"Unknown placement {k!r}.")
        for k in placements
        if k not in snap.placements
    }
    consented = state is not None and state.consented
    segment_ids: frozenset[int] | set[int] = frozenset()
    if consented and any(e.rules for e in known):
        assert state is not None
        current = state.segment_ids
        if current is None:
            current = frozenset(profile_segment_ids(state.profile_id))
        segment_ids = current & snap.activated
    key: str | None = state.holdout_key if state is not None else None
    exposures: list[PendingExposure] = []
    for entry in known:
        if profile_id is None:
            decision = _default(entry)
        elif not consented:
            decision = _default(entry, reason=NO_CONSENT)
        else:
            rule = next(
                (r for r in entry.rules if r.segment_id in segment_ids and r.active_at(now)),
                None,
            )
            if rule is None:
                decision = _default(entry)
            else:
                held = False
                if rule.holdout_percent > 0:
                    key = key or holdout_key(profile_id)
                    held = is_held_out(rule.id, key, rule.holdout_percent)
                if held:
                    decision = _default(entry, rule=rule, holdout=True)
                else:
                    decision = Decision(
                        placement=entry.key,
                        variant=rule.variant.key,
                        payload=rule.variant.payload,
                        rule=rule,
                    )
        decisions[entry.key] = decision
        if consented and (decision.variant is not None or decision.rule is not None):
            assert profile_id is not None
            shown = decision.rule.variant.id if decision.rule and not decision.holdout else None
            exposures.append(
                PendingExposure(
                    profile_id=profile_id,
                    placement_id=entry.id,
                    variant_id=shown or (entry.default.id if entry.default else None),
                    rule_id=decision.rule.id if decision.rule else None,
                    holdout=decision.holdout,
                    at=now,
                )
            )
    if record:
        exposures_record(exposures)
    return {k: decisions[k] for k in placements}
