from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.fields import StrictBooleanField, StrictCharField, StrictIntegerField
from apps.segments.models import Segment

from ..extract import CLUSTERABLE
from ..models import (
    Algorithm,
    Cluster,
    ClusteringConfig,
    ClusteringRun,
    KSelection,
    Scaling,
    Transform,
)
from ..services import MAX_FEATURES, MAX_K, cron_problem

KEY_PATTERN = "^[-a-zA-Z0-9_]+$"
KEY_MAX_LENGTH = 60
MAX_SAMPLE = 10_000_000


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if not isinstance(data, int | float) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class FeatureSerializer(serializers.Serializer[Any]):
    name = StrictChoiceField(choices=list(CLUSTERABLE), help_text="A public feature.")
    transform = StrictChoiceField(
        choices=Transform.choices,
        required=False,
        default=Transform.NONE,
        help_text="log1p for skewed counts and money, before the scaling.",
    )


class _ConfigFields(serializers.Serializer[Any]):
    """The fields a config's create and change share (all optional here)."""

    name = StrictCharField(required=False, min_length=1, max_length=200)
    description = StrictCharField(required=False, allow_blank=True, max_length=10000)
    features = serializers.ListField(
        child=FeatureSerializer(),
        required=False,
        allow_empty=False,
        min_length=1,
        max_length=MAX_FEATURES,
        help_text="What to cluster on, each feature once, with its transform.",
    )
    scaling = StrictChoiceField(choices=Scaling.choices, required=False)
    pca_components = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_FEATURES
    )
    population_segment = StrictCharField(
        required=False,
        allow_null=True,
        max_length=100,
        help_text="Cluster only this segment's members (its key); null: every profile.",
    )
    algorithm = StrictChoiceField(choices=Algorithm.choices, required=False)
    k_min = StrictIntegerField(required=False, min_value=2, max_value=MAX_K)
    k_max = StrictIntegerField(
        required=False, min_value=2, max_value=MAX_K, help_text="At least k_min."
    )
    k_selection = StrictChoiceField(choices=KSelection.choices, required=False)
    silhouette_sample_size = StrictIntegerField(required=False, min_value=10, max_value=MAX_SAMPLE)
    fit_sample_size = StrictIntegerField(required=False, min_value=10, max_value=MAX_SAMPLE)
    eps = StrictFloatField(required=False, min_value=1e-9, max_value=1e6)
    min_samples = StrictIntegerField(required=False, min_value=1, max_value=100_000)
    min_cluster_size = StrictIntegerField(required=False, min_value=1, max_value=2**31 - 1)
    max_cluster_share = StrictFloatField(required=False, min_value=0.01, max_value=1.0)
    random_state = StrictIntegerField(required=False, min_value=0, max_value=2**31 - 1)
    time_limit_seconds = StrictIntegerField(required=False, min_value=10, max_value=86400)
    enabled = StrictBooleanField(required=False)
    schedule = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="A cron line (minute hour day month weekday, UTC), e.g. '0 3 * * *'; "
        "empty: only on demand.",
    )

    def validate_features(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            if item["name"] in seen:
                raise serializers.ValidationError(
                    f"features[{i}].name: {item['name']} is listed twice "
                    f"(first at features[{seen[item['name']]}])."
                )
            seen[item["name"]] = i
        return [{"name": f["name"], "transform": f["transform"]} for f in value]

    def validate_population_segment(self, value: str | None) -> Segment | None:
        if value is None:
            return None
        segment = Segment.objects.filter(key=value).first()
        if segment is None:
            raise serializers.ValidationError(f"No segment has the key {value!r}.")
        return segment

    def validate_schedule(self, value: str) -> str:
        problem = cron_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return " ".join(value.split())

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        config: ClusteringConfig | None = self.context.get("config")
        k_min = attrs.get("k_min", config.k_min if config else 2)
        k_max = attrs.get("k_max", config.k_max if config else 8)
        if k_min > k_max:
            raise serializers.ValidationError({"k_max": f"must be at least k_min ({k_min})."})
        return attrs


class ConfigInputSerializer(_ConfigFields):
    key = StrictCharField(
        min_length=1,
        max_length=KEY_MAX_LENGTH,
        validators=[RegexValidator(KEY_PATTERN, "Letters, digits, hyphens and underscores only.")],
        help_text="How the API names the config; it does not change.",
    )
    name = StrictCharField(min_length=1, max_length=200)
    features = serializers.ListField(
        child=FeatureSerializer(), allow_empty=False, min_length=1, max_length=MAX_FEATURES
    )

    def validate_key(self, value: str) -> str:
        # The pattern's $ lets a final newline through in Python (not in the schema's
        # ECMA reading, nor in the slug check when the config is saved).
        if value.endswith("\n"):
            raise serializers.ValidationError("Letters, digits, hyphens and underscores only.")
        return value


class ConfigChangeInputSerializer(_ConfigFields):
    key = StrictCharField(
        required=False, help_text="The config's own key only: a key does not change."
    )

    def validate_key(self, value: str) -> str:
        config: ClusteringConfig = self.context["config"]
        if value != config.key:
            raise serializers.ValidationError(
                f"The key of a config does not change (this one is {config.key!r})."
            )
        return value


@extend_schema_field({"type": "object", "additionalProperties": {}})
class ObjectField(serializers.JSONField):
    pass


@extend_schema_field({"type": "array", "items": {}})
class ListField(serializers.JSONField):
    pass


class ConfigOutputSerializer(serializers.ModelSerializer[ClusteringConfig]):
    features = FeatureSerializer(many=True)
    population_segment: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="key", read_only=True, allow_null=True
    )
    current_run: serializers.PrimaryKeyRelatedField[Any] = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True
    )

    class Meta:
        model = ClusteringConfig
        fields = [
            "key",
            "name",
            "description",
            "features",
            "scaling",
            "pca_components",
            "population_segment",
            "algorithm",
            "k_min",
            "k_max",
            "k_selection",
            "silhouette_sample_size",
            "fit_sample_size",
            "eps",
            "min_samples",
            "min_cluster_size",
            "max_cluster_share",
            "random_state",
            "time_limit_seconds",
            "enabled",
            "schedule",
            "current_run",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ClusterOutputSerializer(serializers.ModelSerializer[Cluster]):
    segment: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="key", read_only=True, allow_null=True
    )
    centroid = ObjectField(help_text="The members' mean of each feature, in its own units.")
    feature_means = ObjectField(
        help_text="Per feature: the cluster's mean, the population's, and z (how many "
        "standard deviations apart, in the scaled space)."
    )
    distinctive = ListField(help_text="The features that set it apart: feature, z, word.")
    previous = serializers.SerializerMethodField(
        help_text="The cluster of the previous run it continues (run and index), or null."
    )

    class Meta:
        model = Cluster
        fields = [
            "index",
            "segment",
            "size",
            "share",
            "persona_name",
            "persona_description",
            "renamed",
            "centroid",
            "feature_means",
            "distinctive",
            "previous",
            "previous_distance",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {"run": {"type": "integer"}, "index": {"type": "integer"}},
            "required": ["run", "index"],
        }
    )
    def get_previous(self, cluster: Cluster) -> dict[str, int] | None:
        previous = cluster.previous
        return None if previous is None else {"run": previous.run_id, "index": previous.index}


class RunOutputSerializer(serializers.ModelSerializer[ClusteringRun]):
    config: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="key", read_only=True
    )
    candidates = ListField(
        help_text="Every candidate tried: k, inertia, silhouette, davies_bouldin, "
        "calinski_harabasz, sizes, valid, why_invalid (and noise_share for density methods)."
    )
    notes = ListField(help_text="What the run noticed and did (a feature left out, ...).")
    timings = ObjectField(help_text="Seconds per phase: extract, fit, choose, assign, write.")
    features_used = ListField()
    params = ObjectField(help_text="The config as it ran.")

    class Meta:
        model = ClusteringRun
        fields = [
            "id",
            "config",
            "status",
            "error",
            "notes",
            "params",
            "features_used",
            "population_size",
            "candidates",
            "chosen_k",
            "clusters_found",
            "noise_share",
            "fitted_on_sample",
            "sample_size",
            "timings",
            "previous_run",
            "stability_ari",
            "stability_shared",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class RunDetailOutputSerializer(RunOutputSerializer):
    clusters = ClusterOutputSerializer(many=True, read_only=True)

    class Meta(RunOutputSerializer.Meta):
        fields = [*RunOutputSerializer.Meta.fields, "clusters"]
        read_only_fields = fields
