"""The identity rules in force: identifier types, limits, junk values, trait strategies.

Read from the database once per batch (three small queries), so an admin's change
applies to the next batch without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from apps.identity.models import (
    IdentifierType,
    IdentifierTypeConfig,
    JunkIdentifierValue,
    TraitMergeRule,
    TraitStrategy,
)
from apps.identity.normalize import BUILTIN_NORMALIZATION, normalize


@dataclass(frozen=True)
class TypeRule:
    key: str
    priority: int
    cap: int | None
    normalization: str
    trait: str = ""


USER_ID_PRIORITY = -1

# Used when a built-in type has no row (before the data migration, or deleted).
BUILTIN_RULES = {
    IdentifierType.USER_ID.value: TypeRule("user_id", 0, 1, "exact"),
    IdentifierType.EMAIL.value: TypeRule("email", 10, 5, "email", "email"),
    IdentifierType.PHONE.value: TypeRule("phone", 20, 5, "phone", "phone"),
    IdentifierType.ANONYMOUS_ID.value: TypeRule("anonymous_id", 90, None, "exact"),
}


@dataclass
class IdentityRules:
    types: dict[str, TypeRule] = field(default_factory=lambda: dict(BUILTIN_RULES))
    junk: frozenset[str] = frozenset()
    strategies: dict[str, str] = field(default_factory=dict)
    phone_region: str = "US"

    def normalize(self, kind: str, raw: object) -> str | None:
        rule = self.types.get(kind)
        if rule is None:
            return None
        return normalize(
            kind,
            raw,
            phone_region=self.phone_region,
            normalization=rule.normalization,
            extra_junk=self.junk,
        )

    def priority(self, kind: str) -> int:
        if kind == IdentifierType.USER_ID:
            # The account id is what every other identifier is checked against (one
            # per profile, never two profiles with different ones merged): were an
            # email stronger, an event naming bob and alice's email would go to
            # alice and drop bob. Above any configurable priority (they are >= 0).
            return USER_ID_PRIORITY
        rule = self.types.get(kind)
        return rule.priority if rule else 1000

    def cap(self, kind: str) -> int | None:
        if kind == IdentifierType.USER_ID:
            return 1  # one person, one account id: not configurable
        rule = self.types.get(kind)
        return rule.cap if rule else None

    def strategy(self, trait: str) -> str:
        return self.strategies.get(trait, TraitStrategy.NEWEST)

    def trait_types(self) -> list[tuple[str, str]]:
        """(trait name, identifier type) pairs read from traits."""
        return [(r.trait, r.key) for r in self.types.values() if r.trait]


def identity_rules_load() -> IdentityRules:
    types = dict(BUILTIN_RULES)
    for row in IdentifierTypeConfig.objects.all():
        if not row.enabled:
            types.pop(row.key, None)
            continue
        types[row.key] = TypeRule(
            key=row.key,
            priority=row.priority,
            cap=row.max_per_profile,
            normalization=row.normalization or BUILTIN_NORMALIZATION.get(row.key, "exact"),  # type: ignore[call-overload]
            trait=row.trait,
        )
    # user_id and anonymous_id are what the tracking spec is built on.
    types.setdefault("user_id", BUILTIN_RULES["user_id"])
    types.setdefault("anonymous_id", BUILTIN_RULES["anonymous_id"])
    junk = frozenset(
        v.strip().casefold() for v in JunkIdentifierValue.objects.values_list("value", flat=True)
    )
    strategies = dict(TraitMergeRule.objects.values_list("trait", "strategy"))
    return IdentityRules(
        types=types,
        junk=junk,
        strategies=strategies,
        phone_region=settings.CDP["PHONE_DEFAULT_REGION"],
    )
