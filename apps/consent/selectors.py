"""What other apps ask about consent.

``has_consent`` answers "may this profile's data be used for this purpose now (or
at time t)?" for one profile: one indexed query, purposes cached. For many
profiles, ``profiles_with_consent`` filters a Profile queryset in the database
(an EXISTS on an index), so an export of a million profiles streams without
asking per row.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import (
    Case,
    Exists,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.utils import timezone

from apps.identity.selectors import ExternalIdError, parse_external_id
from apps.identity.services import IdentityRules, identity_rules_load

from .hashing import keyed_hash
from .models import (
    OPEN_STATUSES,
    CategoryMapping,
    ConsentRecord,
    ConsentState,
    ConsentStatus,
    DataSubjectRequest,
    Purpose,
    SuppressionEntry,
)


@dataclass(frozen=True)
class PurposeRule:
    id: int
    key: str
    required: bool
    default_granted: bool
    expiry_days: int | None
    gates_storage: bool
    storage_policy: str
    anonymized_properties: tuple[str, ...]
    gates_personalization: bool
    gated_destinations: tuple[str, ...]
    gpc_opt_out: bool
    notice_version: str
    notice_hash: str


@dataclass
class ConsentConfig:
    purposes: dict[str, PurposeRule] = field(default_factory=dict)
    by_id: dict[int, PurposeRule] = field(default_factory=dict)
    categories: dict[str, str] = field(default_factory=dict)  # category -> purpose key
    suppression_active: bool = False
    loaded_at: float = 0.0
    _identity_rules: IdentityRules | None = field(default=None, repr=False)

    @property
    def storage_purposes(self) -> list[PurposeRule]:
        return [p for p in self.purposes.values() if p.gates_storage and not p.required]

    @property
    def gpc_purposes(self) -> list[PurposeRule]:
        return [p for p in self.purposes.values() if p.gpc_opt_out and not p.required]

    @property
    def gate_needed(self) -> bool:
        """Whether ingestion has anything to check at all."""
        return bool(self.purposes) or self.suppression_active

    def identity_rules(self) -> Any:
        """Identity's rules (how identifiers are normalized), loaded once per cache
        period like the rest of this configuration."""
        if self._identity_rules is None:
            self._identity_rules = identity_rules_load()
        return self._identity_rules


_config: ConsentConfig | None = None
# Set by a refresher above (apps/personalization/refresher.py) while it reloads
# the configuration in the background: requests then reload it themselves only
# when it is this many cache periods old (the refresher stopped).
_refreshed_elsewhere = 1.0


def consent_cache_seconds() -> float:
    return float(settings.CDP.get("CONSENT_CACHE_SECONDS", 5))


def consent_refreshed_elsewhere(running: bool) -> None:
    global _refreshed_elsewhere
    _refreshed_elsewhere = 5.0 if running else 1.0


def consent_config(*, fresh: bool = False) -> ConsentConfig:
    """Purposes, category mappings and whether suppression is in use.

    Cached per process for CDP_CONSENT_CACHE_SECONDS (default 5): an admin's change
    applies within that time everywhere, and at once in the process that made it.
    """
    global _config
    ttl = consent_cache_seconds() * _refreshed_elsewhere
    now = time.monotonic()
    if not fresh and _config is not None and now - _config.loaded_at < ttl:
        return _config
    rules = {
        p.key: PurposeRule(
            id=p.id,
            key=p.key,
            required=p.required,
            default_granted=p.default_granted,
            expiry_days=p.expiry_days,
            gates_storage=p.gates_storage,
            storage_policy=p.storage_policy,
            anonymized_properties=tuple(p.anonymized_properties or ()),
            gates_personalization=p.gates_personalization,
            gated_destinations=tuple(p.gated_destinations or ()),
            gpc_opt_out=p.gpc_opt_out,
            notice_version=p.notice_version,
            notice_hash=p.notice_hash,
        )
        for p in Purpose.objects.all()
    }
    by_id = {r.id: r for r in rules.values()}
    categories = {
        c.category: by_id[c.purpose_id].key
        for c in CategoryMapping.objects.all()
        if c.purpose_id in by_id
    }
    _config = ConsentConfig(
        purposes=rules,
        by_id=by_id,
        categories=categories,
        suppression_active=SuppressionEntry.objects.exists(),
        loaded_at=now,
    )
    return _config


def consent_config_clear() -> None:
    global _config
    _config = None


class UnknownPurpose(LookupError):
    pass


def purpose_rule(purpose: str | Purpose | PurposeRule) -> PurposeRule:
    if isinstance(purpose, PurposeRule):
        return purpose
    key = purpose.key if isinstance(purpose, Purpose) else purpose
    rule = consent_config().purposes.get(key) or consent_config(fresh=True).purposes.get(key)
    if rule is None:
        raise UnknownPurpose(f"No consent purpose with key {key!r}.")
    return rule


def _profile_id(profile: Any) -> uuid.UUID:
    if isinstance(profile, uuid.UUID):
        return profile
    if isinstance(profile, str):
        return uuid.UUID(profile)
    return profile.pk


def _granted(status: str, given_at: datetime, rule: PurposeRule, at: datetime) -> bool:
    if status != ConsentStatus.GRANTED:
        return False
    return rule.expiry_days is None or given_at + timedelta(days=rule.expiry_days) > at


def _rule_at(rule: PurposeRule, at: datetime) -> PurposeRule:
    """The purpose's rule as it stood at ``at`` (its expiry then, from the purpose's
    history): "had this person consented on 3 March?" is answered by 3 March's rules."""
    then = (
        Purpose.history.filter(id=rule.id, history_date__lte=at)  # type: ignore[attr-defined]
        .order_by("-history_date", "-history_id")
        .values_list("history_id", "expiry_days")
        .first()
    )
    if then is None:  # no history before (created later, or before history was kept)
        return rule
    return replace(rule, expiry_days=then[1])


def has_consent(
    profile: Any, purpose: str | Purpose | PurposeRule, at: datetime | None = None
) -> bool:
    """May this profile's data be used for this purpose now (or at time ``at``)?

    Required purposes always may; a lapsed grant counts as no statement, so the
    purpose's default applies; denied and withdrawn never may. Pass a live
    profile (consent records follow a merge to its survivor).
    """
    rule = purpose_rule(purpose)
    if rule.required:
        return True
    profile_id = _profile_id(profile)
    if at is None:
        state = (
            ConsentState.objects.filter(profile_id=profile_id, purpose_id=rule.id)
            .values_list("status", "given_at")
            .first()
        )
        now = timezone.now()
        if state is None:
            return rule.default_granted
        status, given_at = state
        if status == ConsentStatus.GRANTED and not _granted(status, given_at, rule, now):
            return rule.default_granted  # lapsed
        return _granted(status, given_at, rule, now)
    rule = _rule_at(rule, at)
    latest = (
        ConsentRecord.objects.filter(profile_id=profile_id, purpose_id=rule.id, given_at__lte=at)
        .order_by("-given_at", "-id")
        .values_list("status", "given_at")
        .first()
    )
    if latest is None:
        return rule.default_granted
    status, given_at = latest
    if status == ConsentStatus.GRANTED and not _granted(status, given_at, rule, at):
        return rule.default_granted
    return _granted(status, given_at, rule, at)


def profiles_with_consent(
    queryset: QuerySet[Any], purpose: str | Purpose | PurposeRule, at: datetime | None = None
) -> QuerySet[Any]:
    """Keep only the profiles whose data may be used for ``purpose`` (now or at ``at``).

    Same answer as ``has_consent`` for each profile, computed in the database.
    """
    rule = purpose_rule(purpose)
    if rule.required:
        return queryset
    when = at or timezone.now()
    if at is None:
        states = ConsentState.objects.filter(profile_id=OuterRef("pk"), purpose_id=rule.id)
        valid = Q(status=ConsentStatus.GRANTED)
        if rule.expiry_days is not None:
            valid &= Q(given_at__gt=when - timedelta(days=rule.expiry_days))
        if rule.default_granted:
            # Everyone except those whose latest statement is a no (a lapsed grant
            # falls back to the default, which is yes).
            refusals = states.exclude(status=ConsentStatus.GRANTED)
            return queryset.exclude(Exists(refusals))
        return queryset.filter(Exists(states.filter(valid)))
    rule = _rule_at(rule, when)
    latest = ConsentRecord.objects.filter(
        profile_id=OuterRef("pk"), purpose_id=rule.id, given_at__lte=when
    ).order_by("-given_at", "-id")
    annotated = queryset.annotate(
        _consent_status=Subquery(latest.values("status")[:1]),
        _consent_given_at=Subquery(latest.values("given_at")[:1]),
    )
    valid = Q(_consent_status=ConsentStatus.GRANTED)
    if rule.expiry_days is not None:
        valid &= Q(_consent_given_at__gt=when - timedelta(days=rule.expiry_days))
    if rule.default_granted:
        lapsed = Q(_consent_status=ConsentStatus.GRANTED) & ~valid
        return annotated.filter(Q(_consent_status__isnull=True) | valid | lapsed)
    return annotated.filter(valid)


def purposes_gating(*, use: str) -> list[PurposeRule]:
    """The purposes a use needs: "storage", "personalization", or "destination:<key>"."""
    rules = consent_config().purposes.values()
    if use == "storage":
        return [r for r in rules if r.gates_storage]
    if use == "personalization":
        return [r for r in rules if r.gates_personalization]
    if use.startswith("destination:"):
        key = use.split(":", 1)[1]
        return [r for r in rules if key in r.gated_destinations]
    raise ValueError(f"Unknown use {use!r}.")


def may_use(profile: Any, use: str, at: datetime | None = None) -> bool:
    """May this profile's data serve this use (every purpose gating it allows)?

    For decisions: ``may_use(profile, "personalization")``; for exports:
    ``may_use(profile, "destination:optimizely")``.
    """
    return all(has_consent(profile, rule, at=at) for rule in purposes_gating(use=use))


def profiles_for_use(
    queryset: QuerySet[Any], use: str, at: datetime | None = None
) -> QuerySet[Any]:
    """Keep only the profiles ``may_use`` allows (one EXISTS per gating purpose)."""
    for rule in purposes_gating(use=use):
        queryset = profiles_with_consent(queryset, rule, at=at)
    return queryset


@dataclass(frozen=True)
class PurposeState:
    purpose: PurposeRule
    name: str
    status: str  # granted, denied, withdrawn, lapsed, default, required
    allowed: bool
    given_at: datetime | None
    expires_at: datetime | None
    record_id: int | None


def consent_states_for_profile(profile: Any) -> list[PurposeState]:
    """Every purpose with this profile's current standing on it."""
    profile_id = _profile_id(profile)
    now = timezone.now()
    states = {s.purpose_id: s for s in ConsentState.objects.filter(profile_id=profile_id)}
    out = []
    for p in Purpose.objects.order_by("key"):
        rule = purpose_rule(p.key)
        s = states.get(p.id)
        if rule.required:
            out.append(PurposeState(rule, p.name, "required", True, None, None, None))
        elif s is None:
            out.append(
                PurposeState(rule, p.name, "default", rule.default_granted, None, None, None)
            )
        else:
            allowed = _granted(s.status, s.given_at, rule, now)
            status = s.status
            if s.status == ConsentStatus.GRANTED and not allowed:
                status, allowed = "lapsed", rule.default_granted
            out.append(
                PurposeState(rule, p.name, status, allowed, s.given_at, s.expires_at, s.record_id)
            )
    return out


def suppression_hits(*, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these identifiers, as (type, normalized value), belong to an erased
    person (are on the suppression list). One indexed query."""
    hashed = {(kind, keyed_hash(kind, value)): (kind, value) for kind, value in keys}
    if not hashed:
        return set()
    found = SuppressionEntry.objects.filter(value_hash__in={h for _, h in hashed}).values_list(
        "identifier_type", "value_hash"
    )
    return {hashed[hit] for hit in found if hit in hashed}


def external_id_suppressed(external_id: str) -> bool:
    """Was the person this external id (``email:...``) names erased? Malformed
    ids and ``id:<uuid>`` (profile ids are never reused) are not."""
    rules = identity_rules_load()
    try:
        kind, raw = parse_external_id(external_id, rules)
    except ExternalIdError:
        return False
    value = rules.normalize(kind, raw) if kind != "id" else None
    return value is not None and bool(suppression_hits(keys=[(kind, value)]))


def consent_log_for_profile(profile: Any) -> QuerySet[ConsentRecord]:
    """The profile's consent timeline, newest first (merged-in records included)."""
    return (
        ConsentRecord.objects.filter(profile_id=_profile_id(profile))
        .select_related("purpose", "entered_by")
        .order_by("-given_at", "-id")
    )


def dsr_list_by_urgency() -> QuerySet[DataSubjectRequest]:
    return DataSubjectRequest.objects.annotate(
        _open=Case(
            When(status__in=OPEN_STATUSES, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
    ).order_by("_open", "due_date", "received_at")
