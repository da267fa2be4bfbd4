"""Consent and suppression at the front door.

Called by ``events.services.event_ingest`` for each batch, after validation and
before the insert, inside the same transaction:

1. Suppression: events carrying an identifier of an erased person are dropped.
2. Capture: consent stated by the event (Segment's
   ``context.consent.categoryPreferences``, categories mapped to purposes in
   admin) or by the request (``Sec-GPC: 1``) is appended to the log at once when
   it is news (see below), so it governs this very event and the next.
3. Storage: events of a person without the storing purpose are dropped, or stored
   without personal data, as the purpose's policy says.

When an event's consent is news
-------------------------------
analytics.js sends the cookie banner's answers (``categoryPreferences``) with every
event, long after they were given, so most of them repeat what is known, and some
are stale: the person withdrew through the API, in admin or by an objection since,
and the cookie still says yes. The rules, per purpose:

* An answer is compared with what statements say *now*: a grant that has lapsed
  (``expiry_days``) says nothing, so a "yes" renews it.
* The "Segment Consent Preference Updated" track event is the person making a new
  choice in the consent manager: it is recorded whenever it differs from the
  current state, whoever made the statement before.
* Any other event's answers are passive: they are recorded only when they differ
  from the current state *and* from the last statement that came with an event or
  a GPC header (the cookie has changed since it last spoke), and a passive "yes"
  never overrides a refusal made through the API, in admin or by a data-subject
  request (source other than event or GPC). A passive "no" is always honoured
  when it is news.
* An event that itself says "no" to a storing purpose is not stored with personal
  data, whatever the log says: it was collected under that answer.

Identifiers are looked up normalized, as identity stores them. With no purposes
and no suppression entries this costs one cached lookup.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.consent.anonymize import event_anonymize
from apps.consent.models import (
    ConsentRecord,
    ConsentSource,
    ConsentState,
    ConsentStatus,
    StoragePolicy,
    SuppressionEntry,
)
from apps.consent.selectors import ConsentConfig, PurposeRule, consent_config, suppression_hits
from apps.identity.selectors import identifier_owners
from apps.identity.services import (
    IdentityClaim,
    IdentityRules,
    identity_rules_load,
    profiles_resolve,
)

from .consent import consent_statements_append

logger = logging.getLogger(__name__)

# The person choosing in the consent manager (Segment's consent spec).
PREFERENCE_UPDATED = "Segment Consent Preference Updated"
_PASSIVE_SOURCES = frozenset({ConsentSource.EVENT, ConsentSource.GPC})

Key = tuple[str, str]  # (identifier type, normalized value)
Statement = tuple[str, datetime]  # (status, given_at)


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


def _raw_keys(row: dict[str, Any]) -> list[tuple[str, Any]]:
    keys: list[tuple[str, Any]] = []
    if row["user_id"]:
        keys.append(("user_id", row["user_id"]))
    if row["anonymous_id"]:
        keys.append(("anonymous_id", row["anonymous_id"]))
    return keys


def _identity_keys(row: dict[str, Any], rules: IdentityRules) -> list[Key]:
    """The row's user and anonymous ids as identity stores them (normalized), the
    user id first (it is the stronger)."""
    keys = []
    for kind, raw in _raw_keys(row):
        value = rules.normalize(kind, raw)
        if value:
            keys.append((kind, value))
    return keys


def suppressed_rows(rows: Sequence[dict[str, Any]], rules: IdentityRules) -> set[int]:
    """Rows that carry an identifier of an erased person: wherever identity would
    read one (ids, alias previousId, identifying traits, context.externalIds)."""
    per_row: dict[int, set[Key]] = {}
    for i, row in enumerate(rows):
        raw = _raw_keys(row)
        if row["type"] == "alias" and row["previous_id"]:
            raw += [("user_id", row["previous_id"]), ("anonymous_id", row["previous_id"])]
        traits = row["traits"] if isinstance(row["traits"], dict) else {}
        ctx_traits = row["context"].get("traits")
        for source in (traits, ctx_traits if isinstance(ctx_traits, dict) else {}):
            for trait, kind in rules.trait_types():
                if source.get(trait) is not None:
                    raw.append((kind, source[trait]))
        external_ids = row["context"].get("externalIds")
        for item in external_ids if isinstance(external_ids, list) else ():
            if isinstance(item, dict) and isinstance(item.get("type"), str):
                raw.append((item["type"], item.get("id")))
        found = set()
        for kind, value in raw:
            normalized = rules.normalize(kind, value)
            if normalized:
                found.add((kind, normalized))
        per_row[i] = found
    hits = suppression_hits(keys={k for found in per_row.values() for k in found})
    return {i for i, found in per_row.items() if found & hits}


def suppressed_event_ids(*, events: Sequence[Any]) -> set[int]:
    """Stored events that carry an identifier of an erased person (for processing).

    The gate drops such events at the door, but one stored just before an erasure,
    or by a web process whose cached config had not yet seen the first suppression
    entry, may reach processing after the erasure: it must not rebuild the person.
    Not cached: one query, and the rules only when anyone was ever erased.
    """
    if not events or not SuppressionEntry.objects.exists():
        return set()
    rows = [
        {
            "type": e.type,
            "user_id": e.user_id,
            "anonymous_id": e.anonymous_id,
            "previous_id": e.previous_id,
            "traits": e.traits,
            "context": e.context,
        }
        for e in events
    ]
    return {events[i].id for i in suppressed_rows(rows, identity_rules_load())}


def _owners_and_states(
    keys: list[Key],
) -> tuple[dict[Key, uuid.UUID], dict[uuid.UUID, dict[int, Statement]]]:
    """Who holds each id of the batch, and their consent state: one query on
    PostgreSQL (identifiers joined to states), two elsewhere."""
    owners: dict[Key, uuid.UUID] = {}
    states: dict[uuid.UUID, dict[int, Statement]] = {}
    if not keys:
        return owners, states
    if connection.vendor != "postgresql":
        owners = identifier_owners(keys=keys)
        for profile_id, purpose_id, status, given_at in ConsentState.objects.filter(
            profile_id__in=set(owners.values())
        ).values_list("profile_id", "purpose_id", "status", "given_at"):
            states.setdefault(profile_id, {})[purpose_id] = (status, given_at)
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


def _row_profile(keys: list[Key], owners: dict[Key, uuid.UUID]) -> uuid.UUID | None:
    for key in keys:  # the user id is the stronger
        if key in owners:
            return owners[key]
    return None


def _answer(rule: PurposeRule, statement: Statement | None, now: datetime) -> bool | None:
    """What a statement says now: yes, no, or nothing (no statement, or a grant
    that has lapsed)."""
    if statement is None:
        return None
    status, given_at = statement
    if status != ConsentStatus.GRANTED:
        return False
    if rule.expiry_days is not None and given_at + timedelta(days=rule.expiry_days) <= now:
        return None
    return True


def _allowed(rule: PurposeRule, state: Statement | None, now: datetime) -> bool:
    answer = _answer(rule, state, now)
    return rule.default_granted if answer is None else answer


def _history(
    pairs: set[tuple[uuid.UUID, int]],
) -> tuple[dict[tuple[uuid.UUID, int], str], dict[tuple[uuid.UUID, int], Statement]]:
    """For these (profile, purpose) pairs: the source of the current statement and
    the last statement that came with an event or a GPC header. One query, made
    only for pairs where an event says something other than the current state."""
    source: dict[tuple[uuid.UUID, int], str] = {}
    passive: dict[tuple[uuid.UUID, int], Statement] = {}
    if not pairs:
        return source, passive
    rows = (
        ConsentRecord.objects.filter(
            profile_id__in={p for p, _ in pairs}, purpose_id__in={u for _, u in pairs}
        )
        .order_by("given_at", "id")
        .values_list("profile_id", "purpose_id", "status", "given_at", "source")
    )
    for profile_id, purpose_id, status, given_at, src in rows:
        pair = (profile_id, purpose_id)
        if pair not in pairs:
            continue
        source[pair] = src
        if src in _PASSIVE_SOURCES:
            passive[pair] = (status, given_at)
    return source, passive


def _resolve(rows: Sequence[dict[str, Any]]) -> list[uuid.UUID | None]:
    return profiles_resolve(
        claims=[
            IdentityClaim(identifiers=_raw_keys(row), timestamp=row["timestamp"]) for row in rows
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


@dataclass
class _GateBatch:
    """What the gate's phases share about one batch of rows."""

    rows: list[dict[str, Any]]
    # Per row: its identifiers (normalized), and what it states per purpose key.
    keys: list[list[Key]]
    stated: list[dict[str, bool]]
    # Per identifier: the profile that holds it; per profile: its consent states.
    owners: dict[Key, uuid.UUID]
    states: dict[uuid.UUID, dict[int, Statement]]
    now: datetime

    def profiles(self) -> Iterator[tuple[dict[str, Any], uuid.UUID | None, dict[str, bool]]]:
        for row, keys, prefs in zip(self.rows, self.keys, self.stated, strict=True):
            yield row, _row_profile(keys, self.owners), prefs


def consent_gate(
    *,
    rows: list[dict[str, Any]],
    gpc: bool = False,
    request_ip: str | None = None,
    user_agent: str = "",
) -> GateResult:
    """Consent at ingestion, for a batch of event rows about to be stored.

    Three phases, each skipped when the configuration makes it moot:

    1. **suppression**: rows that carry an erased person's identifier go
       (``GateResult.suppressed``);
    2. **capture**: what the events say about consent (``context.consent``, a
       ``Preference Updated`` event, the request's ``Sec-GPC: 1``) is appended to
       the consent log where it is news for the person (``consents_recorded``);
       people not seen before are resolved first, so that the statement has a
       profile to belong to;
    3. **enforcement**: each row is kept, anonymized or dropped by the purposes
       that storing events needs (``anonymized``, ``dropped``), on the log's
       answer and never against the event's own "no".

    The rows given are left as they are; ``GateResult.rows`` is what to store.
    Runs in the ingestion's transaction.
    """
    config = consent_config()
    result = GateResult(rows=rows)
    if not config.gate_needed:
        return result
    rows = _gate_suppress(rows, config, result)
    result.rows = rows
    if not config.purposes:
        return result
    stated, from_gpc = _gate_stated(rows, config, gpc=gpc)
    storage = config.storage_purposes
    if not storage and not any(stated):
        return result

    rules = config.identity_rules()
    row_keys = [_identity_keys(r, rules) for r in rows]
    owners, states = _owners_and_states(sorted({k for keys in row_keys for k in keys}))
    batch = _GateBatch(
        rows=rows, keys=row_keys, stated=stated, owners=owners, states=states, now=timezone.now()
    )
    result.consents_recorded = _gate_capture(
        batch, config, from_gpc, request_ip=request_ip, user_agent=user_agent
    )
    if not storage:
        return result
    result.rows = _gate_enforce(batch, storage, result)
    if result.dropped or result.anonymized or result.suppressed:
        logger.info(
            "consent gate: %d suppressed, %d dropped, %d anonymized",
            result.suppressed,
            result.dropped,
            result.anonymized,
        )
    return result


def _gate_suppress(
    rows: list[dict[str, Any]], config: ConsentConfig, result: GateResult
) -> list[dict[str, Any]]:
    """Phase 1: the rows without those of erased people."""
    if not config.suppression_active:
        return rows
    blocked = suppressed_rows(rows, config.identity_rules())
    if not blocked:
        return rows
    result.suppressed = len(blocked)
    return [r for i, r in enumerate(rows) if i not in blocked]


def _gate_stated(
    rows: list[dict[str, Any]], config: ConsentConfig, *, gpc: bool
) -> tuple[list[dict[str, bool]], set[str]]:
    """What each row states per purpose, with Sec-GPC's "no" to the purposes it
    covers; and which purposes that "no" came from."""
    stated = [_preferences(r, config) for r in rows]
    from_gpc: set[str] = set()
    if gpc:
        for prefs in stated:
            for rule in config.gpc_purposes:
                prefs[rule.key] = False
                from_gpc.add(rule.key)
    return stated, from_gpc


def _gate_capture(
    batch: _GateBatch,
    config: ConsentConfig,
    from_gpc: set[str],
    *,
    request_ip: str | None,
    user_agent: str,
) -> int:
    """Phase 2: record what the events state, where it is news; the number of
    statements recorded. New people are resolved together (one identity pass),
    statements appended together."""
    owners, states, now = batch.owners, batch.states, batch.now
    unknown: dict[tuple[Key, ...], dict[str, Any]] = {}
    for row, keys, prefs in zip(batch.rows, batch.keys, batch.stated, strict=True):
        if prefs and keys and _row_profile(keys, owners) is None:
            unknown.setdefault(tuple(keys), row)
    if unknown:
        for held, profile_id in zip(unknown, _resolve(list(unknown.values())), strict=True):
            if profile_id is not None:
                for id_key in held:
                    owners.setdefault(id_key, profile_id)
    source, passive = _history(
        {
            (profile_id, rule.id)
            for _, profile_id, prefs in batch.profiles()
            if prefs and profile_id is not None
            for key, yes in prefs.items()
            if (rule := config.purposes[key]).id in states.get(profile_id, {})
            and _answer(rule, states[profile_id][rule.id], now) is not yes
        }
    )
    statements: list[dict[str, Any]] = []
    for row, profile_id, prefs in batch.profiles():
        if not prefs or profile_id is None:
            continue
        current = states.setdefault(profile_id, {})
        explicit = row["type"] == "track" and row["event"] == PREFERENCE_UPDATED
        given = min(row["timestamp"], now)
        proof: dict[str, Any] | None = None
        for key, yes in prefs.items():
            rule = config.purposes[key]
            if rule.required:
                continue
            pair = (profile_id, rule.id)
            now_says = _answer(rule, current.get(rule.id), now)
            if now_says is yes:
                continue
            if not explicit and rule.id in current:
                if _answer(rule, passive.get(pair), now) is yes:
                    continue  # the cookie has not changed; what was said since stands
                if yes and now_says is False and source.get(pair) not in _PASSIVE_SOURCES:
                    continue  # a passive yes never overrides a refusal made elsewhere
            if yes:
                new = ConsentStatus.GRANTED
            else:
                new = ConsentStatus.WITHDRAWN if now_says else ConsentStatus.DENIED
            by_gpc = key in from_gpc
            if proof is None:
                proof = _proof(row, request_ip, user_agent)
            statements.append(
                {
                    "profile_id": profile_id,
                    "purpose": rule,
                    "status": new,
                    "source": ConsentSource.GPC if by_gpc else ConsentSource.EVENT,
                    "method": "Sec-GPC header"
                    if by_gpc
                    else (PREFERENCE_UPDATED if explicit else "context.consent"),
                    "given_at": given,
                    **proof,
                }
            )
            # The log's state is its latest statement by when it was given: a late
            # event's statement is recorded but changes nothing.
            if rule.id not in current or given >= current[rule.id][1]:
                current[rule.id] = (new, given)
                source[pair] = ConsentSource.GPC if by_gpc else ConsentSource.EVENT
            if pair not in passive or given >= passive[pair][1]:
                passive[pair] = (new, given)
    if not statements:
        return 0
    return len(consent_statements_append(statements=statements, skip_missing=True))


def _gate_enforce(
    batch: _GateBatch, storage: Sequence[PurposeRule], result: GateResult
) -> list[dict[str, Any]]:
    """Phase 3: the rows to store, anonymized where a purpose refused allows it."""
    kept: list[dict[str, Any]] = []
    for row, profile_id, prefs in batch.profiles():
        current = batch.states.get(profile_id, {}) if profile_id else {}
        policy = None
        allow_lists: list[tuple[str, ...]] = []
        for rule in storage:
            if profile_id is None:
                ok = prefs.get(rule.key, rule.default_granted)
            else:
                # The log's answer, and never against the event's own "no".
                ok = _allowed(rule, current.get(rule.id), batch.now) and prefs.get(rule.key, True)
            if not ok:
                # The strictest policy of the purposes refused wins.
                if rule.storage_policy == StoragePolicy.DROP or (
                    row["type"] not in ("track", "page", "screen")
                ):
                    policy = StoragePolicy.DROP
                    break
                policy = StoragePolicy.ANONYMIZE
                allow_lists.append(rule.anonymized_properties)
        if policy is None:
            kept.append(row)
        elif policy == StoragePolicy.ANONYMIZE:
            kept.append(event_anonymize(row, allow_lists))
            result.anonymized += 1
        else:
            result.dropped += 1
    return kept
