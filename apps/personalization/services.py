"""Writes to the content mapping. Callers (API, admin) validate input; these
check the state of the data and raise ``MappingConflict`` (a 409) when it forbids
the change. Every save and delete bumps the mapping version (mapping.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from apps.segments.models import Segment

from .models import ContentVariant, Placement, Rule


class MappingConflict(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@transaction.atomic
def placement_create(
    *, key: str, name: str, description: str = "", default_variant: dict[str, Any] | None = None
) -> Placement:
    """A placement; ``default_variant`` ({key, name, payload}) is created with it."""
    placement = Placement(key=key, name=name, description=description)
    placement.full_clean()
    placement.save()
    if default_variant is not None:
        variant = variant_create(placement=placement, **default_variant)
        placement.default_variant = variant
        placement.save(update_fields=["default_variant", "updated_at"])
    return placement


@transaction.atomic
def placement_update(*, placement: Placement, **changes: Any) -> Placement:
    for name, value in changes.items():
        setattr(placement, name, value)
    placement.full_clean()
    placement.save()
    return placement


@transaction.atomic
def placement_delete(*, placement: Placement) -> None:
    rules = list(Rule.objects.filter(placement=placement).values_list("id", flat=True)[:20])
    if rules:
        raise MappingConflict(
            f"Rules still map segments to this placement: {', '.join(map(str, rules))}. "
            "Delete them first."
        )
    placement.default_variant = None
    placement.save(update_fields=["default_variant", "updated_at"])
    placement.delete()


@transaction.atomic
def variant_create(
    *, placement: Placement, key: str, name: str, payload: dict[str, Any]
) -> ContentVariant:
    variant = ContentVariant(placement=placement, key=key, name=name, payload=payload)
    variant.full_clean()
    variant.save()
    return variant


@transaction.atomic
def variant_update(*, variant: ContentVariant, **changes: Any) -> ContentVariant:
    for name, value in changes.items():
        setattr(variant, name, value)
    variant.full_clean()
    variant.save()
    return variant


@transaction.atomic
def variant_delete(*, variant: ContentVariant) -> None:
    if Placement.objects.filter(default_variant=variant).exists():
        raise MappingConflict(
            f"{variant.key!r} is the default of its placement: choose another default first."
        )
    rules = list(Rule.objects.filter(variant=variant).values_list("id", flat=True)[:20])
    if rules:
        raise MappingConflict(
            f"Rules show {variant.key!r}: {', '.join(map(str, rules))}. "
            "Delete them or point them at another variant first."
        )
    variant.delete()


@transaction.atomic
def rule_create(
    *,
    placement: Placement,
    segment: Segment,
    variant: ContentVariant,
    priority: int = 0,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    holdout_percent: int = 0,
    enabled: bool = True,
) -> Rule:
    rule = Rule(
        placement=placement,
        segment=segment,
        variant=variant,
        priority=priority,
        starts_at=starts_at,
        ends_at=ends_at,
        holdout_percent=holdout_percent,
        enabled=enabled,
    )
    rule.full_clean()
    rule.save()
    return rule


@transaction.atomic
def rule_update(*, rule: Rule, **changes: Any) -> Rule:
    for name, value in changes.items():
        setattr(rule, name, value)
    rule.full_clean()
    rule.save()
    return rule


@transaction.atomic
def rule_delete(*, rule: Rule) -> None:
    rule.delete()


@transaction.atomic
def grid_cell_set(
    *, placement: Placement, segment: Segment, variant: ContentVariant | None
) -> Rule | None:
    """The admin grid's cell (segment x placement): one rule showing ``variant``,
    or none. An existing rule keeps its priority, window and holdout; extra rules
    of the same cell are left alone (the grid shows and warns about them)."""
    rule = Rule.objects.filter(placement=placement, segment=segment).order_by("id").first()
    if variant is None:
        if rule is not None:
            rule.delete()
        return None
    if rule is None:
        return rule_create(placement=placement, segment=segment, variant=variant)
    if rule.variant_id != variant.id:
        return rule_update(rule=rule, variant=variant)
    return rule
