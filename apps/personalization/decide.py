"""Deciding what a profile sees in each placement.

Per request: the mapping from this process's cache (mapping.py), the profile's
consent for personalization (the consent app's ``may_use``), its current segment
ids (one query on the partial index of current memberships), its holdout key
only when a matching rule holds some profiles out, and nothing over events.
Exposures go to a buffer (exposures.py).

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

from django.conf import settings
from django.utils import timezone

from apps.consent.selectors import may_use
from apps.identity.models import Identifier
from apps.identity.selectors import parse_external_id, profile_get_by_external_id
from apps.identity.services import IdentityRules, identity_rules_load
from apps.segments.models import Membership

from .exposures import PendingExposure, exposures_record
from .holdouts import holdout_key, is_held_out
from .mapping import PlacementEntry, RuleEntry, mapping_current

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


def _identity_rules() -> IdentityRules:
    """The identity rules (identifier types, normalization), kept per process for
    DECIDE_MAPPING_CHECK_MS: loading them is three queries, more than the decision."""
    global _rules
    ttl = float(settings.CDP.get("DECIDE_MAPPING_CHECK_MS", 500)) / 1000.0
    now = time.monotonic()
    cached = _rules
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    with _rules_lock:
        rules = identity_rules_load()
        _rules = (now, rules)
        return rules


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


def decide(
    *,
    profile_id: uuid.UUID | None,
    placements: Sequence[str],
    now: datetime | None = None,
    record: bool = True,
) -> dict[str, Decision]:
    """Decisions for a live profile (None: unknown), one per placement key."""
    now = now or timezone.now()
    snap = mapping_current()
    known = [snap.placements[k] for k in dict.fromkeys(placements) if k in snap.placements]
    decisions: dict[str, Decision] = {
        k: Decision(placement=k, error=f"Unknown placement {k!r}.")
        for k in placements
        if k not in snap.placements
    }
    consented = profile_id is not None and may_use(profile_id, "personalization")
    segment_ids: set[int] = set()
    if consented and any(e.rules for e in known):
        assert profile_id is not None
        segment_ids = profile_segment_ids(profile_id) & snap.activated
    key: str | None = None
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
