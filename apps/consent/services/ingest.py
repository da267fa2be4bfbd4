"""Consent and suppression at the front door.

Called by ``events.services.event_ingest`` for each batch, after validation and
before the insert, inside the same transaction:

1. Suppression: events carrying an identifier of an erased person are dropped.
2. Capture: consent stated by the event (Segment's
   ``context.consent.categoryPreferences``, categories mapped to purposes in
   admin) or by the request (``Sec-GPC: 1``) is appended to the log at once when
   it differs from what is known, so it governs this very event and the next.
3. Storage: events of a person without the storing purpose are dropped, or stored
   without personal data, as the purpose's policy says.

With no purposes and no suppression entries this costs one cached lookup.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from apps.consent.hashing import keyed_hash
from apps.consent.models import ConsentSource, ConsentState, ConsentStatus, StoragePolicy
from apps.consent.selectors import ConsentConfig, PurposeRule, consent_config

from .consent import consent_statements_append

logger = logging.getLogger(__name__)

# What an anonymized event keeps of its context: nothing that points at a person.
_SAFE_CONTEXT_KEYS = ("library", "locale", "timezone", "channel")


@dataclass
class GateResult:
    rows: list[dict[str, Any]]
    suppressed: int = 0
    dropped: int = 0
    anonymized: int = 0
    consents_recorded: int = 0
    notes: list[str] = field(default_factory=list)


def _preferences(row: dict[str, Any], config: ConsentConfig) -> dict[str, bool]:
    """Purpose key -> yes/no, from the event's own consent context."""
    consent = row["context"].get("consent")
    if not isinstance(consent, dict):
        return {}
    prefs = consent.get("categoryPreferences")
    if not isinstance(prefs, dict):
        return {}
    out: dict[str, bool] = {}
    for category, value in prefs.items():
        if not isinstance(value, bool):
            continue
        key = config.categories.get(str(category))
        if key is None and str(category) in config.purposes:
            key = str(category)
        if key is not None:
            # One purpose fed by several categories: any "no" is a no.
            out[key] = out.get(key, True) and value
    return out


def _identity_keys(row: dict[str, Any]) -> list[tuple[str, str]]:
    keys = []
    if row["user_id"]:
        keys.append(("user_id", row["user_id"]))
    if row["anonymous_id"]:
        keys.append(("anonymous_id", row["anonymous_id"]))
    return keys


def _suppressed_rows(rows: Sequence[dict[str, Any]]) -> set[int]:
    from apps.consent.models import SuppressionEntry
    from apps.identity.services import identity_rules_load

    rules = identity_rules_load()
    hashes: dict[int, list[tuple[str, str]]] = {}
    for i, row in enumerate(rows):
        keys = _identity_keys(row)
        if row["type"] == "alias" and row["previous_id"]:
            keys += [("user_id", row["previous_id"]), ("anonymous_id", row["previous_id"])]
        traits = row["traits"] if isinstance(row["traits"], dict) else {}
        ctx_traits = row["context"].get("traits")
        for source in (traits, ctx_traits if isinstance(ctx_traits, dict) else {}):
            for kind, trait in rules.trait_types():
                if source.get(trait) is not None:
                    keys.append((kind, source[trait]))
        found = []
        for kind, raw in keys:
            value = rules.normalize(kind, raw)
            if value:
                found.append((kind, keyed_hash(kind, value)))
        hashes[i] = found
    wanted = {h for found in hashes.values() for _, h in found}
    if not wanted:
        return set()
    hit = set(
        SuppressionEntry.objects.filter(value_hash__in=wanted).values_list(
            "identifier_type", "value_hash"
        )
    )
    return {i for i, found in hashes.items() if any(k in hit for k in found)}


def _owners(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], uuid.UUID]:
    from apps.identity.selectors import identifier_owners

    keys = {k for row in rows for k in _identity_keys(row)}
    return identifier_owners(keys=keys) if keys else {}


def _owners_and_states(
    rows: Sequence[dict[str, Any]],
) -> tuple[dict[tuple[str, str], uuid.UUID], dict[uuid.UUID, dict[int, tuple[str, Any]]]]:
    """Who holds each id of the batch, and their consent state: one query on
    PostgreSQL (identifiers joined to states), two elsewhere."""
    from django.db import connection

    if connection.vendor != "postgresql":
        found = _owners(rows)
        return found, _states(set(found.values()))
    keys = sorted({k for row in rows for k in _identity_keys(row)})
    owners: dict[tuple[str, str], uuid.UUID] = {}
    states: dict[uuid.UUID, dict[int, tuple[str, Any]]] = {}
    if not keys:
        return owners, states
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.type, i.value, i.profile_id, s.purpose_id, s.status, s.given_at "
            "FROM unnest(%s::text[], %s::text[]) AS k(type, value) "
            "JOIN identity_identifier i ON i.type = k.type AND i.value = k.value "
            "LEFT JOIN consent_consentstate s ON s.profile_id = i.profile_id",
            [[k for k, _ in keys], [v for _, v in keys]],
        )
        for kind, value, profile_id, purpose_id, status, given_at in cursor.fetchall():
            owners[(kind, value)] = profile_id
            held = states.setdefault(profile_id, {})
            if purpose_id is not None:
                held[purpose_id] = (status, given_at)
    return owners, states


def _row_profile(row: dict[str, Any], owners: dict[tuple[str, str], uuid.UUID]) -> uuid.UUID | None:
    for key in _identity_keys(row):  # the user id is the stronger
        if key in owners:
            return owners[key]
    return None


def _states(profile_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict[int, tuple[str, Any]]]:
    out: dict[uuid.UUID, dict[int, tuple[str, Any]]] = {}
    if not profile_ids:
        return out
    for profile_id, purpose_id, status, given_at in ConsentState.objects.filter(
        profile_id__in=profile_ids
    ).values_list("profile_id", "purpose_id", "status", "given_at"):
        out.setdefault(profile_id, {})[purpose_id] = (status, given_at)
    return out


def _allowed(rule: PurposeRule, state: tuple[str, Any] | None, now: Any) -> bool:
    if state is None:
        return rule.default_granted
    status, given_at = state
    if status != ConsentStatus.GRANTED:
        return False
    if rule.expiry_days is None:
        return True
    from datetime import timedelta

    return given_at + timedelta(days=rule.expiry_days) > now or rule.default_granted


def _resolve(rows: Sequence[dict[str, Any]]) -> list[uuid.UUID | None]:
    from apps.identity.services import IdentityClaim, profiles_resolve

    return profiles_resolve(
        claims=[
            IdentityClaim(identifiers=list(_identity_keys(row)), timestamp=row["timestamp"])
            for row in rows
        ]
    )


def _proof(row: dict[str, Any], request_ip: str | None, user_agent: str) -> dict[str, Any]:
    ctx = row["context"]
    page = ctx.get("page") if isinstance(ctx.get("page"), dict) else {}
    consent = ctx.get("consent") if isinstance(ctx.get("consent"), dict) else {}
    tcf = consent.get("tcfString") or consent.get("tcString") or ""
    gcm = consent.get("googleConsentMode") or consent.get("gcm") or {}
    ip = ctx.get("ip") if isinstance(ctx.get("ip"), str) else request_ip
    ua = ctx.get("userAgent") if isinstance(ctx.get("userAgent"), str) else user_agent
    return {
        "ip": ip,
        "user_agent": ua or "",
        "page_url": str(page.get("url") or "")[:2000],
        "tcf_string": tcf if isinstance(tcf, str) else "",
        "gcm_flags": gcm if isinstance(gcm, dict) else {},
        "event_message_id": row["message_id"],
    }


def _anonymize(row: dict[str, Any]) -> dict[str, Any]:
    ctx = row["context"]
    row.update(
        user_id="",
        anonymous_id="",
        previous_id="",
        group_id="",
        traits={},
        context={k: ctx[k] for k in _SAFE_CONTEXT_KEYS if k in ctx},
    )
    return row


def consent_gate(
    *,
    rows: list[dict[str, Any]],
    gpc: bool = False,
    request_ip: str | None = None,
    user_agent: str = "",
) -> GateResult:
    config = consent_config()
    if not config.gate_needed:
        return GateResult(rows=rows)
    result = GateResult(rows=rows)
    if config.suppression_active:
        blocked = _suppressed_rows(rows)
        if blocked:
            rows = [r for i, r in enumerate(rows) if i not in blocked]
            result.suppressed = len(blocked)
    if not config.purposes:
        result.rows = rows
        return result

    stated = [_preferences(r, config) for r in rows]
    if gpc:
        for prefs in stated:
            for rule in config.gpc_purposes:
                prefs[rule.key] = False
    storage = config.storage_purposes
    if not storage and not any(stated):
        result.rows = rows
        return result

    owners, states = _owners_and_states(rows)
    now = timezone.now()

    # Capture: record what the events state, where it changes what is known. New
    # people are resolved together (one identity pass), statements appended together.
    unknown: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for row, prefs in zip(rows, stated, strict=True):
        if prefs and _row_profile(row, owners) is None:
            unknown.setdefault(tuple(_identity_keys(row)), row)
    if unknown:
        for keys, profile_id in zip(unknown, _resolve(list(unknown.values())), strict=True):
            if profile_id is not None:
                for id_key in keys:
                    owners.setdefault(id_key, profile_id)
    statements: list[dict[str, Any]] = []
    for row, prefs in zip(rows, stated, strict=True):
        if not prefs:
            continue
        profile_id = _row_profile(row, owners)
        if profile_id is None:
            continue
        current = states.setdefault(profile_id, {})
        changes = []
        for key, yes in prefs.items():
            rule = config.purposes[key]
            if rule.required:
                continue
            had = current.get(rule.id)
            if yes:
                new = ConsentStatus.GRANTED
            elif had and had[0] == ConsentStatus.GRANTED:
                new = ConsentStatus.WITHDRAWN
            else:
                new = ConsentStatus.DENIED
            if had is not None and (had[0] == new or (not yes and had[0] != "granted")):
                continue
            changes.append((rule, new))
        if not changes:
            continue
        proof = _proof(row, request_ip, user_agent)
        from_gpc = gpc and all(rule.gpc_opt_out and new != "granted" for rule, new in changes)
        given = min(row["timestamp"], now)
        for rule, new in changes:
            statements.append(
                {
                    "profile_id": profile_id,
                    "purpose": rule,
                    "status": new,
                    "source": ConsentSource.GPC if from_gpc else ConsentSource.EVENT,
                    "method": "Sec-GPC header" if from_gpc else "context.consent",
                    "given_at": given,
                    **proof,
                }
            )
            current[rule.id] = (new, given)
    if statements:
        consent_statements_append(statements=statements)
        result.consents_recorded = len(statements)

    if not storage:
        result.rows = rows
        return result
    kept: list[dict[str, Any]] = []
    for row, prefs in zip(rows, stated, strict=True):
        profile_id = _row_profile(row, owners)
        current = states.get(profile_id, {}) if profile_id else {}
        policy = None
        for rule in storage:
            ok = prefs[rule.key] if rule.key in prefs else _allowed(rule, current.get(rule.id), now)
            if not ok:
                # The strictest policy of the purposes refused wins.
                if rule.storage_policy == StoragePolicy.DROP or (
                    row["type"] != "track" and (row["type"] not in ("page", "screen"))
                ):
                    policy = StoragePolicy.DROP
                    break
                policy = StoragePolicy.ANONYMIZE
        if policy is None:
            kept.append(row)
        elif policy == StoragePolicy.ANONYMIZE:
            kept.append(_anonymize(row))
            result.anonymized += 1
        else:
            result.dropped += 1
    result.rows = kept
    if result.dropped or result.anonymized or result.suppressed:
        logger.info(
            "consent gate: %d suppressed, %d dropped, %d anonymized",
            result.suppressed,
            result.dropped,
            result.anonymized,
        )
    return result
