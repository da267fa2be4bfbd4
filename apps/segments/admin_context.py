"""The profile admin page's "Segments" section (identity's profile_admin_context
registry): the person's current memberships with when and why they entered, and
the past ones. Imported by apps/segments/admin.py, so it is there with the admin."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from apps.identity.sections import profile_admin_context

from .memberships import profile_memberships, reason_lines

PAST_SHOWN = 20


@profile_admin_context.register("segments.memberships", order=25)
def memberships_admin_context(request: HttpRequest, profile_id: str) -> dict[str, Any]:
    if not request.user.has_perm("segments.view_membership"):
        return {}
    try:
        pid = uuid.UUID(str(profile_id))
    except ValueError:
        return {}  # the profile page answers for an id that names nobody
    rows = profile_memberships(pid)
    may_view_segments = request.user.has_perm("segments.view_segment")

    def shown(membership: Any) -> dict[str, Any]:
        segment = membership.segment
        return {
            "key": segment.key,
            "name": segment.name,
            "url": reverse("admin:segments_segment_change", args=[segment.pk])
            if may_view_segments
            else "",
            "entered_at": membership.entered_at,
            "exited_at": membership.exited_at,
            "source": membership.get_source_display(),
            "reason": reason_lines(membership.reason or {}),
            "exit_reason": reason_lines(membership.exit_reason or {}),
        }

    return {
        "segment_memberships": {
            "current": [shown(m) for m in rows.filter(exited_at__isnull=True)],
            "past": [shown(m) for m in rows.filter(exited_at__isnull=False)[:PAST_SHOWN]],
        }
    }
