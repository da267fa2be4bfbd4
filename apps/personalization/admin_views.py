"""The marketers' page (admin): segments by placements, each cell a variant;
warnings for rules that tie; coverage (how many profiles get each variant now);
what one profile sees, and why; and a lift readout per rule from exposures.

Coverage reads current memberships: per placement, each profile counts for the
first rule (priority, then id) whose activated segment it is in; a rule's holdout
is estimated by its percentage; everyone else gets the default. Consent is not
applied there (a profile without it also gets the default): it is an upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.events.models import Event
from apps.identity.models import Profile
from apps.identity.selectors import ExternalIdError, profile_get_by_external_id
from apps.segments.models import Membership, Segment

from .decide import decide
from .mapping import mapping_current
from .models import ContentVariant, Exposure, Placement, Rule
from .services import grid_cell_set

CONVERSION_EVENT = "Order Completed"


# -- the preview of a variant ----------------------------------------------------------


def variant_preview(payload: Any) -> SafeString:
    """Every text escaped; an image only from an http(s) URL (payload.py checks it);
    an HTML snippet only inside an iframe with an empty ``sandbox`` (no scripts, no
    forms, no navigation, its own origin), given as ``srcdoc`` (escaped)."""
    if not isinstance(payload, dict):
        return format_html("<em>{}</em>", "no payload")
    parts: list[SafeString] = []
    if payload.get("image_url"):
        parts.append(
            format_html(
                '<img src="{}" alt="" style="max-width:240px;max-height:120px;display:block">',
                payload["image_url"],
            )
        )
    if payload.get("headline"):
        parts.append(format_html("<strong>{}</strong>", payload["headline"]))
    if payload.get("body"):
        parts.append(format_html("<p>{}</p>", payload["body"]))
    if payload.get("cta_text"):
        parts.append(
            format_html(
                '<span class="button" title="{}">{}</span>',
                payload.get("cta_url", ""),
                payload["cta_text"],
            )
        )
    if payload.get("html"):
        parts.append(
            format_html(
                '<iframe class="perso-snippet" sandbox="" referrerpolicy="no-referrer" '
                'srcdoc="{}" style="width:320px;height:120px;border:1px solid #ccc"></iframe>',
                payload["html"],
            )
        )
    if payload.get("data"):
        parts.append(format_html("<code>{}</code>", str(payload["data"])[:300]))
    return format_html(
        '<div class="perso-preview">{}</div>', format_html_join("", "{}", ((p,) for p in parts))
    )


# -- ties --------------------------------------------------------------------------------


def rule_ties(rules: list[Rule]) -> dict[int, list[int]]:
    """Rule id -> the ids of enabled rules of its placement at the same priority
    whose windows overlap and whose segments differ (one profile in both segments
    sees the lowest id's variant)."""
    ties: dict[int, list[int]] = {}
    enabled = [r for r in rules if r.enabled]
    for i, a in enumerate(enabled):
        for b in enabled[i + 1 :]:
            if (a.placement_id, a.priority) != (b.placement_id, b.priority):
                continue
            if a.segment_id == b.segment_id and a.variant_id == b.variant_id:
                continue
            if _overlap(a, b):
                ties.setdefault(a.id, []).append(b.id)
                ties.setdefault(b.id, []).append(a.id)
    return ties


def _overlap(a: Rule, b: Rule) -> bool:
    far_past, far_future = timezone.now().replace(year=1), timezone.now().replace(year=9999)
    return max(a.starts_at or far_past, b.starts_at or far_past) < min(
        a.ends_at or far_future, b.ends_at or far_future
    )


# -- coverage ------------------------------------------------------------------------------


@dataclass
class VariantCoverage:
    variant: str
    shown: float = 0.0
    held_out: float = 0.0
    rules: list[int] = field(default_factory=list)


def placement_coverage(placement_key: str, total: int) -> list[VariantCoverage]:
    snap = mapping_current()
    entry = snap.placements.get(placement_key)
    if entry is None:
        return []
    now = timezone.now()
    rows: dict[str, VariantCoverage] = {}
    earlier: list[int] = []
    covered = 0.0
    for rule in entry.rules:
        if not rule.active_at(now) or rule.segment_id not in snap.activated:
            continue
        members = Membership.objects.filter(segment_id=rule.segment_id, exited_at__isnull=True)
        if earlier:
            members = members.exclude(
                profile_id__in=Membership.objects.filter(
                    segment_id__in=earlier, exited_at__isnull=True
                ).values("profile_id")
            )
        n = members.count()
        earlier.append(rule.segment_id)
        row = rows.setdefault(rule.variant.key, VariantCoverage(rule.variant.key))
        row.rules.append(rule.id)
        held = n * rule.holdout_percent / 100
        row.shown += n - held
        covered += n - held
        if entry.default is not None and held:
            d = rows.setdefault(entry.default.key, VariantCoverage(entry.default.key))
            d.held_out += held
    if entry.default is not None:
        d = rows.setdefault(entry.default.key, VariantCoverage(entry.default.key))
        d.shown += max(total - covered - d.held_out, 0)
    return sorted(rows.values(), key=lambda r: -(r.shown + r.held_out))


# -- lift ----------------------------------------------------------------------------------


def rule_lift(rule_id: int) -> dict[str, dict[str, float]]:
    """Treated and held-out profiles of a rule, and how many of each completed an
    order after their first exposure."""
    exposure = Exposure._meta.db_table
    event = Event._meta.db_table
    sql = f"""
        SELECT e.holdout, COUNT(*),
               SUM(CASE WHEN EXISTS (
                   SELECT 1 FROM {event} ev
                   WHERE ev.profile_id = e.profile_id AND ev.type = 'track'
                     AND ev.event = %s AND ev.timestamp > e.first_at
               ) THEN 1 ELSE 0 END)
        FROM (SELECT profile_id, holdout, MIN(at) AS first_at FROM {exposure}
              WHERE rule_id = %s GROUP BY profile_id, holdout) e
        GROUP BY e.holdout
    """
    out: dict[str, dict[str, float]] = {
        "treated": {"profiles": 0, "converted": 0},
        "holdout": {"profiles": 0, "converted": 0},
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, [CONVERSION_EVENT, rule_id])
        for holdout, profiles, converted in cursor.fetchall():
            out["holdout" if holdout else "treated"] = {
                "profiles": int(profiles),
                "converted": int(converted or 0),
            }
    for group in out.values():
        group["rate"] = group["converted"] / group["profiles"] if group["profiles"] else 0.0
    return out


# -- the page ------------------------------------------------------------------------------


def _cell_name(segment_id: int, placement_id: int) -> str:
    return f"cell-{segment_id}-{placement_id}"


def mapping_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("personalization.view_rule"):
        raise PermissionDenied
    placements = list(Placement.objects.select_related("default_variant").order_by("key"))
    variants = list(ContentVariant.objects.select_related("placement").order_by("key"))
    segments = list(Segment.objects.order_by("key"))
    rules = list(Rule.objects.select_related("segment", "variant", "placement").order_by("id"))
    cells: dict[tuple[int, int], list[Rule]] = {}
    for rule in rules:
        cells.setdefault((rule.segment_id, rule.placement_id), []).append(rule)

    if request.method == "POST":
        if not all(
            request.user.has_perm(f"personalization.{p}_rule") for p in ("add", "change", "delete")
        ):
            raise PermissionDenied
        by_id = {v.id: v for v in variants}
        changed = 0
        for segment in segments:
            for placement in placements:
                name = _cell_name(segment.id, placement.id)
                if name not in request.POST:
                    continue
                raw = request.POST[name]
                current = cells.get((segment.id, placement.id), [])
                now = current[0].variant_id if current else None
                # ASCII digits only: "²" passes isdigit() and int() refuses it.
                wanted = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None
                if wanted == now:
                    continue
                variant = by_id.get(wanted) if wanted is not None else None
                if wanted is not None and (variant is None or variant.placement_id != placement.id):
                    messages.error(request, f"{segment.key} x {placement.key}: unknown variant.")
                    continue
                try:
                    grid_cell_set(placement=placement, segment=segment, variant=variant)
                except ValidationError as exc:
                    messages.error(request, f"{segment.key} x {placement.key}: {exc.messages}")
                    continue
                changed += 1
        messages.success(request, f"{changed} cell(s) saved.")
        return HttpResponseRedirect(reverse("admin:personalization_placement_mapping"))

    ties = rule_ties(rules)
    warnings = []
    seen: set[tuple[int, int]] = set()
    for rule_id, others in sorted(ties.items()):
        a = next(r for r in rules if r.id == rule_id)
        for other_id in others:
            pair = (min(rule_id, other_id), max(rule_id, other_id))
            if pair in seen:
                continue
            seen.add(pair)
            b = next(r for r in rules if r.id == other_id)
            both = (
                Membership.objects.filter(segment_id=a.segment_id, exited_at__isnull=True)
                .filter(
                    profile_id__in=Membership.objects.filter(
                        segment_id=b.segment_id, exited_at__isnull=True
                    ).values("profile_id")
                )
                .count()
            )
            warnings.append(
                f"Rules {pair[0]} and {pair[1]} in {a.placement.key} both have priority "
                f"{a.priority} ({a.segment.key} and {b.segment.key}, {both} profile(s) in "
                f"both): rule {pair[0]}'s variant wins (lowest id)."
            )

    grid = []
    for segment in segments:
        row = []
        for placement in placements:
            current = cells.get((segment.id, placement.id), [])
            row.append(
                {
                    "name": _cell_name(segment.id, placement.id),
                    "current": current[0].variant_id if current else None,
                    "options": [v for v in variants if v.placement_id == placement.id],
                    "extra": len(current) - 1 if len(current) > 1 else 0,
                    "tie": bool(current and current[0].id in ties),
                    "rule": current[0] if current else None,
                }
            )
        grid.append({"segment": segment, "cells": row})

    total = Profile.objects.filter(merged_into__isnull=True).count()
    coverage = [{"placement": p, "rows": placement_coverage(p.key, total)} for p in placements]

    lookup: dict[str, Any] = {}
    profile_q = request.GET.get("profile", "").strip()
    # Looking a person up shows their segments: it needs the view permission on
    # memberships too, as the segments admin does.
    if profile_q and not request.user.has_perm("segments.view_membership"):
        lookup = {"query": profile_q, "error": "You may not look up people's segments."}
        profile_q = ""
    if profile_q:
        lookup["query"] = profile_q
        try:
            profile = profile_get_by_external_id(external_id=profile_q)
        except ExternalIdError as exc:
            lookup["error"] = str(exc)
        else:
            lookup["found"] = profile is not None
            decisions = decide(
                profile_id=profile.pk if profile else None,
                placements=[p.key for p in placements],
                record=False,
            )
            lookup["rows"] = [
                {
                    "placement": key,
                    "variant": d.variant,
                    "holdout": d.holdout,
                    "reason": (
                        f"rule {d.rule.id} (segment {d.rule.segment_key})" if d.rule else d.reason
                    ),
                }
                for key, d in decisions.items()
            ]

    lifts = [
        {"rule": r, "lift": rule_lift(r.id)}
        for r in rules
        if r.holdout_percent > 0 or Exposure.objects.filter(rule=r).exists()
    ]
    context = {
        "title": "Content mapping",
        "placements": placements,
        "grid": grid,
        "warnings": warnings,
        "coverage": coverage,
        "total": total,
        "lookup": lookup,
        "lifts": lifts,
        "activated": {s.id for s in segments if s.activated},
        "can_change": request.user.has_perm("personalization.change_rule"),
        "previews": [(v, variant_preview(v.payload)) for v in variants],
        "has_permission": True,
    }
    return TemplateResponse(request, "admin/personalization/mapping.html", context)
