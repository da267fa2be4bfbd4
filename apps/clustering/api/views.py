"""Clustering in the management API: configs (``/api/v1/clustering/configs``),
starting and listing their runs, and a run with its clusters and personas
(``/api/v1/clustering/runs/<id>``)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as ModelValidationError
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.openapi import error_responses
from apps.common.parsers import DepthSafeJSONParser as JSONParser

from ..models import ClusteringConfig, ClusteringRun
from ..services import RunInProgress, config_delete, config_save, run_start
from .serializers import (
    KEY_MAX_LENGTH,
    KEY_PATTERN,
    ConfigChangeInputSerializer,
    ConfigInputSerializer,
    ConfigOutputSerializer,
    RunDetailOutputSerializer,
    RunOutputSerializer,
)

KEY = OpenApiParameter(
    "key",
    {"type": "string", "pattern": KEY_PATTERN, "maxLength": KEY_MAX_LENGTH},
    OpenApiParameter.PATH,
    description="The config's key.",
)
RUN_ID = OpenApiParameter(
    "id",
    {"type": "integer", "minimum": 1, "maximum": 10**18 - 1},
    OpenApiParameter.PATH,
    description="The run's id.",
)
LIMIT_DEFAULT, LIMIT_MAX = 50, 500
LIMIT = OpenApiParameter(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": LIMIT_DEFAULT},
    OpenApiParameter.QUERY,
    description=f"How many runs, newest first (default {LIMIT_DEFAULT}).",
)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def _in_progress(exc: RunInProgress) -> Conflict:
    return Conflict(
        f"Run {exc.run.pk} of this config is {exc.run.status}: two runs of one config never "
        "overlap. Wait for it to finish."
    )


_COPIED = [
    "name", "description", "features", "scaling", "pca_components", "population_segment",
    "algorithm", "k_min", "k_max", "k_selection", "silhouette_sample_size", "fit_sample_size",
    "eps", "min_samples", "min_cluster_size", "max_cluster_share", "random_state",
    "time_limit_seconds", "enabled", "schedule",
]  # fmt: skip


def _fresh(config: ClusteringConfig) -> ClusteringConfig:
    return ClusteringConfig.objects.select_related("population_segment").get(pk=config.pk)


class ClusteringConfigViewSet(viewsets.GenericViewSet[ClusteringConfig]):
    """Clustering configs: model permissions on clustering configs (view to read;
    add, change and delete to write)."""

    parser_classes = [JSONParser]
    queryset = ClusteringConfig.objects.select_related("population_segment").order_by("key")
    serializer_class = ConfigOutputSerializer
    lookup_field = "key"
    pagination_class = None  # a handful a marketer keeps

    @extend_schema(
        description="Every clustering config, by key.",
        responses={200: ConfigOutputSerializer(many=True), **error_responses()},
    )
    def list(self, request: Request) -> Response:
        return Response(ConfigOutputSerializer(self.get_queryset(), many=True).data)

    @extend_schema(
        description="Create a config (and its beat schedule). Runs are started by "
        "POST .../runs or by the schedule.",
        request=ConfigInputSerializer,
        responses={201: ConfigOutputSerializer, **error_responses(400, 409)},
    )
    def create(self, request: Request) -> Response:
        data = ConfigInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        taken = f"A clustering config with the key {v['key']!r} already exists."
        if ClusteringConfig.objects.filter(key=v["key"]).exists():
            raise Conflict(taken)
        config = ClusteringConfig(key=v["key"])
        for name in _COPIED:
            if name in v:
                setattr(config, name, v[name])
        try:
            with transaction.atomic():
                config = config_save(config=config)
        except ModelValidationError as exc:
            raise ValidationError(exc.message_dict) from exc
        except IntegrityError:
            if ClusteringConfig.objects.filter(key=v["key"]).exists():
                raise Conflict(taken) from None
            raise
        return Response(ConfigOutputSerializer(_fresh(config)).data, status=201)

    @extend_schema(
        description="One config.",
        parameters=[KEY],
        responses={200: ConfigOutputSerializer, **error_responses(404)},
    )
    def retrieve(self, request: Request, key: str) -> Response:
        return Response(ConfigOutputSerializer(self.get_object()).data)

    @extend_schema(
        description="Change any of its fields but the key; the next run uses them.",
        parameters=[KEY],
        request=ConfigChangeInputSerializer,
        responses={200: ConfigOutputSerializer, **error_responses(400, 404)},
    )
    def partial_update(self, request: Request, key: str) -> Response:
        config = self.get_object()
        data = ConfigChangeInputSerializer(data=request.data, context={"config": config})
        data.is_valid(raise_exception=True)
        for name in _COPIED:
            if name in data.validated_data:
                setattr(config, name, data.validated_data[name])
        try:
            config = config_save(config=config)
        except ModelValidationError as exc:
            raise ValidationError(exc.message_dict) from exc
        return Response(ConfigOutputSerializer(_fresh(config)).data)

    @extend_schema(
        description="Delete a config and its runs; its cluster segments stay, emptied "
        "and disabled. Refused (409) while a run is queued or running.",
        parameters=[KEY],
        responses={204: None, **error_responses(404, 409)},
    )
    def destroy(self, request: Request, key: str) -> Response:
        config = self.get_object()
        try:
            config_delete(config=config)
        except RunInProgress as exc:
            raise _in_progress(exc) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return LIMIT_DEFAULT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= LIMIT_MAX):
        raise ValidationError(
            {"limit": f"limit must be a whole number from 1 to {LIMIT_MAX}, got {raw!r}."}
        )
    return int(raw)


class ClusteringConfigRunsApi(APIView):
    """A config's runs (model permissions on clustering runs: view to list, add to
    start one)."""

    parser_classes = [JSONParser]
    queryset = ClusteringRun.objects.none()

    @extend_schema(
        description="The config's runs, newest first (without their clusters).",
        parameters=[KEY, LIMIT],
        responses={200: RunOutputSerializer(many=True), **error_responses(400, 404)},
    )
    def get(self, request: Request, key: str) -> Response:
        limit = _limit(request)
        config = get_object_or_404(ClusteringConfig, key=key)
        runs = config.runs.select_related("config").order_by("-id")[:limit]
        return Response(RunOutputSerializer(runs, many=True).data)

    @extend_schema(
        description="Start a run now: queued (202), run by a worker. A run of this config "
        "already queued or running is a 409.",
        parameters=[KEY],
        request=None,
        responses={202: RunOutputSerializer, **error_responses(404, 409)},
    )
    def post(self, request: Request, key: str) -> Response:
        config = get_object_or_404(ClusteringConfig, key=key)
        try:
            run = run_start(config=config)
        except RunInProgress as exc:
            raise _in_progress(exc) from exc
        run.refresh_from_db()  # an eager worker (tests, embedded) has run it already
        return Response(RunOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ClusteringRunDetailApi(APIView):
    """One run: candidates, the chosen k, timings, stability, and its clusters
    with their personas."""

    queryset = ClusteringRun.objects.none()

    @extend_schema(
        parameters=[RUN_ID],
        responses={200: RunDetailOutputSerializer, **error_responses(404)},
    )
    def get(self, request: Request, id: Any) -> Response:
        run = get_object_or_404(
            ClusteringRun.objects.select_related("config").prefetch_related(
                "clusters__segment", "clusters__previous"
            ),
            pk=int(id),
        )
        return Response(RunDetailOutputSerializer(run).data)
