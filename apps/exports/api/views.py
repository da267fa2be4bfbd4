"""``GET /api/v1/exports/feed``: the JSON feed personalization tools pull with
their feed token (schema ``cdp.feed/1``, apps/exports/api/serializers.py)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.openapi import error_responses
from apps.personalization.models import ContentVariant, MappingVersion, Placement, Rule

from ..models import Destination
from ..selectors import current_members, destination_audiences, profiles_allowed
from .authentication import FeedTokenAuthentication, IsEnabledFeed
from .serializers import SCHEMA_VERSION, FeedSerializer


def feed_build(destination: Destination) -> dict[str, Any]:
    audiences = destination_audiences(destination).exported
    activated = {s.pk for s in audiences}
    allowed = profiles_allowed(destination)
    placements = Placement.objects.select_related("default_variant").order_by("key")
    variants = ContentVariant.objects.select_related("placement").order_by("key")
    # Only the destination's own (activated) segments: another segment's rule
    # would tell the vendor that segment's key and targeting.
    rules = (
        Rule.objects.filter(enabled=True, segment_id__in=activated)
        .select_related("placement", "segment", "variant")
        .order_by("placement__key", "-priority", "id")
    )
    version = MappingVersion.objects.filter(pk=1).values_list("version", flat=True).first()
    return {
        "schema": SCHEMA_VERSION,
        "generated_at": timezone.now(),
        "destination": destination.key,
        "mapping_version": version,
        "placements": [
            {
                "key": p.key,
                "name": p.name,
                "default_variant": p.default_variant.key if p.default_variant else None,
            }
            for p in placements
        ],
        "variants": [
            {"key": v.key, "placement": v.placement.key, "name": v.name, "payload": v.payload}
            for v in variants
        ],
        "rules": [
            {
                "id": r.pk,
                "placement": r.placement.key,
                "segment": r.segment.key,
                "variant": r.variant.key,
                "priority": r.priority,
                "starts_at": r.starts_at,
                "ends_at": r.ends_at,
                "holdout_percent": r.holdout_percent,
            }
            for r in rules
        ],
        "audiences": [
            {
                "key": s.key,
                "name": s.name,
                "kind": s.kind,
                "members": allowed.filter(
                    pk__in=current_members([s.pk]).values("profile_id")
                ).count(),
            }
            for s in audiences
            if s.pk in activated
        ],
    }


class FeedApi(APIView):
    authentication_classes = [FeedTokenAuthentication]
    permission_classes = [IsEnabledFeed]

    @extend_schema(
        operation_id="exports_feed",
        summary="The JSON feed of a feed destination",
        description="Placements, variants, rules and audiences (schema `cdp.feed/1`), "
        "for the feed destination whose token is sent. 401 without a feed token, "
        "403 when the feed is disabled.",
        responses={200: FeedSerializer, **error_responses()},
        tags=["exports"],
    )
    def get(self, request: Request) -> Response:
        destination = request.auth
        assert isinstance(destination, Destination)
        return Response(FeedSerializer(feed_build(destination)).data)
