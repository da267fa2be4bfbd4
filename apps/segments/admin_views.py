"""What the segment admin pages show beyond the form: the builder's live preview
(a JSON view), the size chart (an inline SVG drawn here, no JavaScript and nothing
loaded from elsewhere), the refresh history and the members with their reasons."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponseNotAllowed, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.common.validators import contains_nul
from apps.consent.models import Purpose

from .api.serializers import external_id
from .conditions import NODE_TYPES, OPERATORS, TIMES_OPS, ConditionInvalid, condition_errors
from .features import PUBLIC_FEATURES
from .memberships import (
    reason_lines,
    segment_lookups,
    segment_members,
    segment_preview,
    segment_size_series,
)
from .models import Membership, Segment, SegmentKind, SegmentRefresh
from .rules import FEATURE_KINDS, KIND_OPERATORS

PREVIEW_SAMPLE = 8
MEMBERS_PER_PAGE = 50
REFRESHES_SHOWN = 10
MAX_PREVIEW_BODY = 256 * 1024  # a tree of MAX_NODES nodes is far below this


# -- the live preview ---------------------------------------------------------------------------


def preview_view(request: HttpRequest) -> JsonResponse | HttpResponseNotAllowed:
    """POST ``{"condition": {...}, "key": "own-key"?}`` (CSRF token in the
    X-CSRFToken header): ``{"count", "sample"}``, or ``{"errors": [...]}`` with a
    400 naming each bad node by its path. It reads profiles: it needs the view
    permission on segments, and the one on memberships for the sample."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm("segments.view_segment"):
        return JsonResponse({"errors": ["You may not view segments."]}, status=403)
    if len(request.body) > MAX_PREVIEW_BODY:
        return _errors([f"body: larger than {MAX_PREVIEW_BODY // 1024} KB"])
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return _errors(['body: must be JSON, {"condition": {...}}'])
    except RecursionError:
        return _errors(["body: nested too deeply"])
    if not isinstance(body, dict) or "condition" not in body:
        return _errors(['body: must be a JSON object with a condition, {"condition": {...}}'])
    condition, key = body["condition"], body.get("key")
    if contains_nul(body):
        return _errors(["condition: NUL characters (\\u0000) are not allowed"])
    own_key = key if isinstance(key, str) and key else None
    # The segment being edited may not reach itself (segment_preview checks the
    # tree as a new one, without its key).
    errors = condition_errors(condition, segment_lookups(own_key=own_key))
    if errors:
        return _errors(errors)
    try:
        preview = segment_preview(condition, sample_size=PREVIEW_SAMPLE)
    except ConditionInvalid as exc:
        return _errors(exc.errors)
    answer: dict[str, Any] = {"count": preview.count}
    if request.user.has_perm("segments.view_membership"):
        answer["sample"] = [
            {
                "external_id": external_id(pid),
                "url": reverse("admin:identity_profile_change", args=[pid]),
            }
            for pid in preview.sample
        ]
    return JsonResponse(answer)


def _errors(errors: list[str]) -> JsonResponse:
    return JsonResponse({"errors": errors}, status=400)


def builder_config(segment: Segment | None) -> dict[str, Any]:
    """What the builder's forms offer (read by static/segments/builder.js)."""
    own = segment.key if segment else None
    return {
        "previewUrl": reverse("admin:segments_segment_preview"),
        "ownKey": own,
        "nodeTypes": list(NODE_TYPES),
        "operators": list(OPERATORS),
        "timesOps": list(TIMES_OPS),
        "features": [{"name": name, "kind": FEATURE_KINDS[name]} for name in PUBLIC_FEATURES],
        "kindOperators": {kind: sorted(ops) for kind, ops in KIND_OPERATORS.items()},
        "purposes": list(Purpose.objects.order_by("key").values_list("key", flat=True)),
        "segments": [
            {"key": k, "name": n}
            for k, n in Segment.objects.exclude(key=own or "")
            .order_by("key")
            .values_list("key", "name")
        ],
    }


# -- the size chart -----------------------------------------------------------------------------

CHART_W, CHART_H = 720, 220
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 16, 40


def size_chart_svg(segment: Segment, *, now: datetime | None = None) -> SafeString:
    """The segment's size over time (memberships.segment_size_series) as an inline
    SVG line chart, with its axes labelled and a text alternative."""
    series = segment_size_series(segment, now=now)
    if series:
        # For a segment younger than a minute the series spaces its points over a
        # minute, past its last point (now): those would be drawn in the future.
        series = [p for p in series[:-1] if p[0] <= series[-1][0]] + [series[-1]]
    title = f"Size of {segment.name or segment.key} over time"
    if not series:
        return format_html('<p class="help">{}: no history yet.</p>', title)
    first, last = series[0][0], series[-1][0]
    top = max(max(n for _, n in series), 1)
    span = (last - first).total_seconds() or 1.0
    plot_w, plot_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B

    def x(at: datetime) -> float:
        return PAD_L + plot_w * (at - first).total_seconds() / span

    def y(n: int) -> float:
        return PAD_T + plot_h * (1 - n / top)

    points = " ".join(f"{x(at):.1f},{y(n):.1f}" for at, n in series)
    now_size = series[-1][1]
    peak = max(n for _, n in series)
    desc = (
        f"From {_label(first)} to {_label(last)}: {now_size} "
        f"member{'' if now_size == 1 else 's'} now, at most {peak}."
    )
    y_ticks = sorted({0, top // 2, top}) if top > 1 else [0, 1]
    y_axis = format_html_join(
        "",
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#ddd"/>'
        '<text x="{}" y="{}" text-anchor="end" font-size="11" fill="#666">{}</text>',
        (
            (PAD_L, f"{y(t):.1f}", CHART_W - PAD_R, f"{y(t):.1f}", PAD_L - 6, f"{y(t) + 4:.1f}", t)
            for t in y_ticks
        ),
    )
    # Start, middle and end, leaving out a label that would overlap its neighbour
    # (a young segment's points are seconds apart).
    x_ticks: list[tuple[datetime, str]] = []
    for at, anchor in ((first, "start"), (series[len(series) // 2][0], "middle"), (last, "end")):
        if not x_ticks or x(at) - x(x_ticks[-1][0]) >= 140:
            x_ticks.append((at, anchor))
    if x_ticks[-1][0] != last and len(x_ticks) > 1:
        x_ticks[-1] = (last, "end")
    x_axis = format_html_join(
        "",
        '<text x="{}" y="{}" text-anchor="{}" font-size="11" fill="#666">{}</text>',
        ((f"{x(at):.1f}", CHART_H - PAD_B + 16, anchor, _label(at)) for at, anchor in x_ticks),
    )
    return format_html(
        '<svg id="segment-size-chart" class="segment-size-chart" role="img" '
        'aria-labelledby="size-chart-title size-chart-desc" viewBox="0 0 {w} {h}" '
        'width="{w}" height="{h}" style="max-width:100%;height:auto" '
        'xmlns="http://www.w3.org/2000/svg">'
        '<title id="size-chart-title">{title}</title><desc id="size-chart-desc">{desc}</desc>'
        "{y_axis}"
        '<line x1="{l}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/>'
        '<line x1="{l}" y1="{t}" x2="{l}" y2="{b}" stroke="#999"/>'
        "{x_axis}"
        '<text x="{l}" y="{axis_y}" font-size="11" fill="#666">time (UTC)</text>'
        '<text x="12" y="{mid}" font-size="11" fill="#666" '
        'transform="rotate(-90 12 {mid})" text-anchor="middle">members</text>'
        '<polyline class="size-line" fill="none" stroke="#417690" stroke-width="2" '
        'points="{points}"/>'
        "</svg>",
        w=CHART_W,
        h=CHART_H,
        title=title,
        desc=desc,
        y_axis=y_axis,
        x_axis=x_axis,
        l=PAD_L,
        r=CHART_W - PAD_R,
        t=PAD_T,
        b=CHART_H - PAD_B,
        axis_y=CHART_H - 4,
        mid=PAD_T + plot_h // 2,
        points=points,
    )


def _label(at: datetime) -> str:
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M}"


# -- refresh history and members ----------------------------------------------------------------


@dataclass(frozen=True)
class MemberRow:
    external_id: str
    url: str
    entered_at: datetime
    source: str
    reason: list[str]


@dataclass(frozen=True)
class MembersPage:
    rows: list[MemberRow]
    number: int
    pages: int
    has_previous: bool
    has_next: bool


def members_page(segment: Segment, page: Any) -> MembersPage:
    """One page of the current members, longest-standing first. The page count
    comes from the segment's size (kept by every write), not a COUNT(*)."""
    try:
        number = max(int(page), 1)
    except (TypeError, ValueError):
        number = 1
    pages = max((segment.size + MEMBERS_PER_PAGE - 1) // MEMBERS_PER_PAGE, 1)
    number = min(number, pages)
    start = (number - 1) * MEMBERS_PER_PAGE
    memberships: list[Membership] = list(
        segment_members(segment)[start : start + MEMBERS_PER_PAGE + 1]
    )
    rows = [
        MemberRow(
            external_id=external_id(m.profile_id),
            url=reverse("admin:identity_profile_change", args=[m.profile_id]),
            entered_at=m.entered_at,
            source=m.get_source_display(),
            reason=reason_lines(m.reason or {}),
        )
        for m in memberships[:MEMBERS_PER_PAGE]
    ]
    return MembersPage(
        rows=rows,
        number=number,
        pages=max(pages, number),
        has_previous=number > 1,
        has_next=len(memberships) > MEMBERS_PER_PAGE,
    )


def detail_context(request: HttpRequest, segment: Segment) -> dict[str, Any]:
    """The read-only sections under a segment's form."""
    context: dict[str, Any] = {
        "size_chart": size_chart_svg(segment),
        "refreshes": list(SegmentRefresh.objects.filter(segment=segment)[:REFRESHES_SHOWN]),
        "is_cluster": segment.kind == SegmentKind.CLUSTER,
    }
    if request.user.has_perm("segments.view_membership"):
        context["members"] = members_page(segment, request.GET.get("members_page"))
    return context
