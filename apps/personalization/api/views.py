"""The content mapping in the management API (``/api/v1/placements``,
``/api/v1/variants``, ``/api/v1/rules``) and the decision API
(``/api/v1/decide``)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api_auth.authentication import BearerTokenAuthentication
from apps.common.openapi import error_responses
from apps.common.parsers import DepthSafeJSONParser as JSONParser
from apps.identity.selectors import ExternalIdError
from apps.personalization import services
from apps.personalization.decide import decide, profile_state_for
from apps.personalization.keys import (
    PUBLIC_ID_TYPES,
    PublishableKeyAuthentication,
    user_hash_valid,
)
from apps.personalization.models import ContentVariant, Placement, PublishableKey, Rule
from apps.segments.models import Segment

from .serializers import (
    KEY_MAX_LENGTH,
    KEY_PATTERN,
    DecideInputSerializer,
    DecideOutputSerializer,
    PlacementChangeSerializer,
    PlacementCreateSerializer,
    PlacementOutputSerializer,
    RuleChangeSerializer,
    RuleCreateSerializer,
    RuleOutputSerializer,
    VariantChangeSerializer,
    VariantCreateSerializer,
    VariantOutputSerializer,
    decide_input_plain,
)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def _key_param(what: str) -> OpenApiParameter:
    return OpenApiParameter(
        "key",
        {"type": "string", "pattern": KEY_PATTERN, "maxLength": KEY_MAX_LENGTH},
        OpenApiParameter.PATH,
        description=f"The {what}'s key.",
    )


RULE_ID = OpenApiParameter(
    "id", {"type": "integer", "minimum": 1}, OpenApiParameter.PATH, description="The rule's id."
)


def _named(model: Any, field: str, key: str, **filters: Any) -> Any:
    """The row a request names by key, or a 400 naming the field."""
    obj = model.objects.filter(key=key, **filters).first()
    if obj is None:
        what = {"placement": "placement", "segment": "segment"}.get(field, "variant")
        raise ValidationError({field: [f"No {what} with the key {key!r}."]})
    return obj


def _conflict(exc: services.MappingConflict) -> Conflict:
    return Conflict(exc.message)


class _MappingViewSet(viewsets.GenericViewSet[Any]):
    parser_classes = [JSONParser]
    # A few dozen rows a marketer keeps, not a growing table.
    pagination_class = None


class PlacementViewSet(_MappingViewSet):
    """Placements: model permissions on placements."""

    queryset = Placement.objects.select_related("default_variant").prefetch_related("variants")
    serializer_class = PlacementOutputSerializer
    lookup_field = "key"

    @extend_schema(
        description="All placements, by key.",
        responses={200: PlacementOutputSerializer(many=True), **error_responses()},
    )
    def list(self, request: Request) -> Response:
        return Response(PlacementOutputSerializer(self.get_queryset(), many=True).data)

    @extend_schema(
        description="Create a placement, with its default variant if given.",
        request=PlacementCreateSerializer,
        responses={201: PlacementOutputSerializer, **error_responses(400, 409)},
    )
    def create(self, request: Request) -> Response:
        data = PlacementCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if Placement.objects.filter(key=v["key"]).exists():
            raise Conflict(f"A placement with the key {v['key']!r} already exists.")
        default = v["default_variant"]
        if default and ContentVariant.objects.filter(key=default["key"]).exists():
            raise Conflict(f"A variant with the key {default['key']!r} already exists.")
        try:
            placement = services.placement_create(
                key=v["key"],
                name=v["name"],
                description=v["description"],
                default_variant=dict(default) if default else None,
            )
        except IntegrityError:
            raise Conflict("A placement or variant with this key was just created.") from None
        return Response(
            PlacementOutputSerializer(self.get_queryset().get(pk=placement.pk)).data, 201
        )

    @extend_schema(
        description="One placement.",
        parameters=[_key_param("placement")],
        responses={200: PlacementOutputSerializer, **error_responses(404)},
    )
    def retrieve(self, request: Request, key: str) -> Response:
        return Response(PlacementOutputSerializer(self.get_object()).data)

    @extend_schema(
        description="Change its name, description or default variant (one of its own).",
        parameters=[_key_param("placement")],
        request=PlacementChangeSerializer,
        responses={200: PlacementOutputSerializer, **error_responses(400, 404)},
    )
    def partial_update(self, request: Request, key: str) -> Response:
        placement = self.get_object()
        data = PlacementChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        if "default_variant" in changes and changes["default_variant"] is not None:
            changes["default_variant"] = _named(
                ContentVariant, "default_variant", changes["default_variant"], placement=placement
            )
        services.placement_update(placement=placement, **changes)
        return Response(PlacementOutputSerializer(self.get_queryset().get(pk=placement.pk)).data)

    @extend_schema(
        description="Delete a placement and its variants; refused (409) while rules "
        "map segments to it.",
        parameters=[_key_param("placement")],
        responses={204: None, **error_responses(404, 409)},
    )
    def destroy(self, request: Request, key: str) -> Response:
        try:
            services.placement_delete(placement=self.get_object())
        except services.MappingConflict as exc:
            raise _conflict(exc) from exc
        return Response(status=204)


class VariantViewSet(_MappingViewSet):
    """Content variants: model permissions on content variants."""

    queryset = ContentVariant.objects.select_related("placement")
    serializer_class = VariantOutputSerializer
    lookup_field = "key"

    @extend_schema(
        description="All variants, by placement and key.",
        responses={200: VariantOutputSerializer(many=True), **error_responses()},
    )
    def list(self, request: Request) -> Response:
        return Response(VariantOutputSerializer(self.get_queryset(), many=True).data)

    @extend_schema(
        description="Create a variant of a placement.",
        request=VariantCreateSerializer,
        responses={201: VariantOutputSerializer, **error_responses(400, 409)},
    )
    def create(self, request: Request) -> Response:
        data = VariantCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        placement = _named(Placement, "placement", v["placement"])
        if ContentVariant.objects.filter(key=v["key"]).exists():
            raise Conflict(f"A variant with the key {v['key']!r} already exists.")
        try:
            variant = services.variant_create(
                placement=placement, key=v["key"], name=v["name"], payload=v["payload"]
            )
        except IntegrityError:
            raise Conflict(f"A variant with the key {v['key']!r} was just created.") from None
        return Response(VariantOutputSerializer(variant).data, status=201)

    @extend_schema(
        description="One variant.",
        parameters=[_key_param("variant")],
        responses={200: VariantOutputSerializer, **error_responses(404)},
    )
    def retrieve(self, request: Request, key: str) -> Response:
        return Response(VariantOutputSerializer(self.get_object()).data)

    @extend_schema(
        description="Change its name or payload (its placement stays).",
        parameters=[_key_param("variant")],
        request=VariantChangeSerializer,
        responses={200: VariantOutputSerializer, **error_responses(400, 404)},
    )
    def partial_update(self, request: Request, key: str) -> Response:
        variant = self.get_object()
        data = VariantChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        variant = services.variant_update(variant=variant, **data.validated_data)
        return Response(VariantOutputSerializer(variant).data)

    @extend_schema(
        description="Delete a variant; refused (409) while it is its placement's default "
        "or rules show it.",
        parameters=[_key_param("variant")],
        responses={204: None, **error_responses(404, 409)},
    )
    def destroy(self, request: Request, key: str) -> Response:
        try:
            services.variant_delete(variant=self.get_object())
        except services.MappingConflict as exc:
            raise _conflict(exc) from exc
        return Response(status=204)


def _window_check(starts_at: Any, ends_at: Any) -> None:
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise ValidationError({"ends_at": ["Must be after starts_at."]})


class RuleViewSet(_MappingViewSet):
    """Rules: model permissions on rules."""

    queryset = Rule.objects.select_related("placement", "segment", "variant")
    serializer_class = RuleOutputSerializer
    lookup_field = "id"

    @extend_schema(
        description="All rules, by placement, priority (highest first) and id.",
        responses={200: RuleOutputSerializer(many=True), **error_responses()},
    )
    def list(self, request: Request) -> Response:
        return Response(RuleOutputSerializer(self.get_queryset(), many=True).data)

    @extend_schema(
        description="Map a segment to a variant in a placement. Unknown keys, or a variant "
        "of another placement, are a 400 naming the field.",
        request=RuleCreateSerializer,
        responses={201: RuleOutputSerializer, **error_responses(400)},
    )
    def create(self, request: Request) -> Response:
        data = RuleCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        placement = _named(Placement, "placement", v.pop("placement"))
        segment = _named(Segment, "segment", v.pop("segment"))
        variant = _named(ContentVariant, "variant", v.pop("variant"))
        if variant.placement_id != placement.id:
            raise ValidationError(
                {"variant": [f"{variant.key!r} is a variant of another placement."]}
            )
        _window_check(v.get("starts_at"), v.get("ends_at"))
        rule = services.rule_create(placement=placement, segment=segment, variant=variant, **v)
        return Response(RuleOutputSerializer(rule).data, status=201)

    @extend_schema(
        description="One rule.",
        parameters=[RULE_ID],
        responses={200: RuleOutputSerializer, **error_responses(404)},
    )
    def retrieve(self, request: Request, id: int) -> Response:
        return Response(RuleOutputSerializer(self.get_object()).data)

    @extend_schema(
        description="Change any of its fields but the placement.",
        parameters=[RULE_ID],
        request=RuleChangeSerializer,
        responses={200: RuleOutputSerializer, **error_responses(400, 404)},
    )
    def partial_update(self, request: Request, id: int) -> Response:
        rule = self.get_object()
        data = RuleChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        if "segment" in v:
            v["segment"] = _named(Segment, "segment", v["segment"])
        if "variant" in v:
            variant = _named(ContentVariant, "variant", v["variant"])
            if variant.placement_id != rule.placement_id:
                raise ValidationError(
                    {"variant": [f"{variant.key!r} is a variant of another placement."]}
                )
            v["variant"] = variant
        _window_check(v.get("starts_at", rule.starts_at), v.get("ends_at", rule.ends_at))
        rule = services.rule_update(rule=rule, **v)
        return Response(RuleOutputSerializer(self.get_queryset().get(pk=rule.pk)).data)

    @extend_schema(
        description="Delete a rule.",
        parameters=[RULE_ID],
        responses={204: None, **error_responses(404)},
    )
    def destroy(self, request: Request, id: int) -> Response:
        services.rule_delete(rule=self.get_object())
        return Response(status=204)


class DecidePermission(permissions.BasePermission):
    """A publishable key, or a user with the view permissions on placements and
    memberships (the user's permissions come with the cached token, so this costs
    no query: apps/api_auth/selectors.py)."""

    message = (
        "Deciding needs a publishable key, or the view permissions on placements and "
        "on segment memberships."
    )

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, PublishableKey):
            return True
        user = request.user
        if not user or not user.is_authenticated:
            return False
        # A decision tells which segments a person (named by email, phone, ...) is
        # in: reading memberships is the caller's right, not only placements.
        return bool(
            user.has_perm("personalization.view_placement")
            and user.has_perm("segments.view_membership")
        )


class DecideApi(APIView):
    """What a profile sees in each placement (apps/personalization/decide.py)."""

    authentication_classes = [PublishableKeyAuthentication, BearerTokenAuthentication]
    permission_classes = [DecidePermission]
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="decide",
        description="The variant each placement shows this profile, with the reason (the "
        "rule and segment, `fallback` or `no_consent`) and whether the profile is held "
        "out. An unknown profile (or a first-time anonymous id) gets the defaults; an "
        "unknown placement gets an `error` in its entry. With a publishable key: only "
        "`anonymous_id:` and `user_id:` profiles (a `user_id` with its `user_hash`, else "
        "403), and no segment in the reason.",
        request=DecideInputSerializer,
        responses={200: DecideOutputSerializer, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        v = decide_input_plain(request.data)
        if v is None:  # not plainly valid: the serializer judges, and words the 400
            data = DecideInputSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            v = data.validated_data
        key = request.auth if isinstance(request.auth, PublishableKey) else None
        public = key is not None
        kind, _sep, value = v["profile"].partition(":")
        if public and kind not in PUBLIC_ID_TYPES:
            raise ValidationError(
                {
                    "profile": [
                        "A publishable key decides for anonymous_id:<id> or user_id:<id> only."
                    ]
                }
            )
        # Before any lookup: a refused user id costs no query and tells nothing
        # of whether the profile exists.
        if (
            key is not None
            and kind == "user_id"
            and not user_hash_valid(key, value, v.get("user_hash"))
        ):
            raise PermissionDenied(
                "A publishable key decides for a user_id only with its user_hash (the "
                "HMAC-SHA256 of the user id with the key's identity secret); without "
                "one, use the anonymous_id."
            )
        try:
            state = profile_state_for(v["profile"])
        except ExternalIdError as exc:
            raise ValidationError({"profile": [str(exc)]}) from exc
        decisions = decide(state=state, placements=v["placements"])
        return Response({"decisions": {k: d.as_json(public=public) for k, d in decisions.items()}})
