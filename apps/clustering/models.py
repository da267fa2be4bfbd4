"""Machine-learned segments: a config says what to cluster and how, a run is one
fit of it, and each cluster of a run is (the current version of) a segment of
kind "cluster" whose members the run writes (apps/segments/written.py).

The pipeline (extract, transform, fit every candidate k, choose, guard rails,
personas, continuity, write) is apps/clustering/services.py; the numeric part,
on numpy arrays only, is apps/clustering/fitting.py.
"""

from __future__ import annotations

from django.db import models


class Transform(models.TextChoices):
    NONE = "none", "None"
    LOG1P = "log1p", "log(1 + x), for skewed counts and money"


class Scaling(models.TextChoices):
    ZSCORE = "zscore", "z-score (mean 0, standard deviation 1)"
    MINMAX = "minmax", "min-max (0 to 1)"
    ROBUST = "robust", "robust (median 0, interquartile range 1)"


class Algorithm(models.TextChoices):
    KMEANS = "kmeans", "k-means"
    MINIBATCH_KMEANS = "minibatch_kmeans", "mini-batch k-means"
    AGGLOMERATIVE = "agglomerative", "agglomerative (Ward linkage)"
    DBSCAN = "dbscan", "DBSCAN"
    HDBSCAN = "hdbscan", "HDBSCAN"


# Fitted on a bounded sample, the rest assigned to the nearest cluster centroid.
SAMPLED_ALGORITHMS = frozenset({Algorithm.AGGLOMERATIVE, Algorithm.DBSCAN, Algorithm.HDBSCAN})
# The number of clusters is what the data gives, not a k searched.
DENSITY_ALGORITHMS = frozenset({Algorithm.DBSCAN, Algorithm.HDBSCAN})


class KSelection(models.TextChoices):
    SILHOUETTE = "silhouette", "silhouette (highest, on a sample)"
    DAVIES_BOULDIN = "davies_bouldin", "Davies-Bouldin (lowest)"
    CALINSKI_HARABASZ = "calinski_harabasz", "Calinski-Harabasz (highest)"
    ELBOW = "elbow", "elbow of the inertia curve (knee detection)"


class ClusteringConfig(models.Model):
    """What to cluster and how. ``features`` is a list of
    ``{"name": <public feature>, "transform": "log1p" | "none"}``
    (apps/clustering/extract.py says which features may be clustered)."""

    key = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    features = models.JSONField(default=list)
    scaling = models.CharField(max_length=10, choices=Scaling.choices, default=Scaling.ZSCORE)
    pca_components = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Reduce to this many principal components (empty: none)."
    )
    population_segment = models.ForeignKey(
        "segments.Segment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Cluster only this segment's current members (empty: every live profile).",
    )
    algorithm = models.CharField(max_length=20, choices=Algorithm.choices, default=Algorithm.KMEANS)
    k_min = models.PositiveSmallIntegerField(default=2)
    k_max = models.PositiveSmallIntegerField(default=8)
    k_selection = models.CharField(
        max_length=20, choices=KSelection.choices, default=KSelection.SILHOUETTE
    )
    silhouette_sample_size = models.PositiveIntegerField(
        default=5000, help_text="The silhouette is quadratic: it is scored on this many profiles."
    )
    fit_sample_size = models.PositiveIntegerField(
        default=20000,
        help_text="Agglomerative, DBSCAN and HDBSCAN are fitted on at most this many "
        "profiles; the rest go to the nearest cluster centroid.",
    )
    eps = models.FloatField(default=0.5, help_text="DBSCAN: neighbourhood radius (scaled units).")
    min_samples = models.PositiveIntegerField(
        default=10, help_text="DBSCAN and HDBSCAN: neighbours that make a core point."
    )
    min_cluster_size = models.PositiveIntegerField(
        default=10, help_text="A clustering with a smaller cluster is degenerate."
    )
    max_cluster_share = models.FloatField(
        default=0.95, help_text="A clustering with one cluster above this share is degenerate."
    )
    random_state = models.PositiveIntegerField(default=0)
    time_limit_seconds = models.PositiveIntegerField(default=1800)
    enabled = models.BooleanField(default=True)
    schedule = models.CharField(
        max_length=100,
        blank=True,
        default="0 3 * * *",
        help_text="When to recluster, as a cron line (minute hour day month weekday, UTC); "
        "empty: only on demand.",
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    # The run whose model and clusters are current (what between-runs assignment uses).
    current_run = models.ForeignKey(
        "clustering.ClusteringRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    # Numbers the segments this config made, so keys are never reused.
    segment_serial = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        verbose_name = "clustering config"

    def __str__(self) -> str:
        return self.name or self.key

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from .services import config_problems

        fields = (
            "features",
            "k_min",
            "k_max",
            "max_cluster_share",
            "eps",
            "silhouette_sample_size",
            "fit_sample_size",
            "min_samples",
            "time_limit_seconds",
            "pca_components",
            "schedule",
        )
        problems = config_problems({name: getattr(self, name) for name in fields})
        if problems:
            raise ValidationError(problems)


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    DEGENERATE = "degenerate", "Degenerate"


class ClusteringRun(models.Model):
    """One fit of a config. Only a succeeded run writes memberships; a failed or
    degenerate one keeps the previous run's and says why (``error``)."""

    config = models.ForeignKey(ClusteringConfig, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    error = models.TextField(blank=True, default="")
    # What the run noticed and did about it (a dropped feature, a narrowed k range).
    notes = models.JSONField(default=list, blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="The config as it ran.")
    features_used = models.JSONField(default=list, blank=True)
    population_size = models.PositiveIntegerField(default=0)
    # One entry per candidate: {"k", "inertia", "silhouette", "davies_bouldin",
    # "calinski_harabasz", "sizes", "valid", "why_invalid"}.
    candidates = models.JSONField(default=list, blank=True)
    chosen_k = models.PositiveSmallIntegerField(null=True, blank=True)
    clusters_found = models.PositiveSmallIntegerField(null=True, blank=True)
    noise_share = models.FloatField(null=True, blank=True)
    fitted_on_sample = models.BooleanField(default=False)
    sample_size = models.PositiveIntegerField(null=True, blank=True)
    # Seconds per phase: extract, fit, choose, assign, write.
    timings = models.JSONField(default=dict, blank=True)
    previous_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stability_ari = models.FloatField(
        null=True, blank=True, help_text="Adjusted Rand index against the previous run."
    )
    stability_shared = models.PositiveIntegerField(
        null=True, blank=True, help_text="Profiles both runs placed in a cluster."
    )
    # What assigns a profile later: the transform's parameters and the centroids
    # in the transformed space (apps/clustering/fitting.py, FittedModel).
    model = models.JSONField(default=dict, blank=True)
    # A sample for the report's scatter: {"axes": [...], "points": [[x, y, index], ...]}.
    scatter = models.JSONField(default=dict, blank=True)
    task_id = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["config", "status"], name="clustering_run_status_idx")]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.config} ({self.get_status_display().lower()})"


class Cluster(models.Model):
    """One cluster of a run, written as the members of ``segment``. A cluster
    matched to one of the previous run (``previous``) keeps its segment and
    persona; an unmatched one gets a new segment."""

    run = models.ForeignKey(ClusteringRun, on_delete=models.CASCADE, related_name="clusters")
    index = models.PositiveSmallIntegerField()
    segment = models.ForeignKey(
        "segments.Segment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    size = models.PositiveIntegerField(default=0)
    share = models.FloatField(default=0)
    # {feature: value}, in the features' own units.
    centroid = models.JSONField(default=dict)
    # {feature: {"cluster": mean, "population": mean, "z": (cluster - population) / sd}}
    feature_means = models.JSONField(default=dict)
    # The features that set it apart, most distinctive first: [{"feature", "z", "word"}].
    distinctive = models.JSONField(default=list)
    persona_name = models.CharField(max_length=200)
    persona_description = models.TextField(blank=True, default="")
    renamed = models.BooleanField(
        default=False, help_text="A marketer named it: later runs keep the name."
    )
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    previous_distance = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="cluster_run_index_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.persona_name} (cluster {self.index} of run {self.run_id})"


class ChunkStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"


class RunChunk(models.Model):
    """One chunk of a run's assignment: the profiles with ids from ``first_id``
    to ``last_id``. Whoever claims it (a Celery worker, or the run's own
    process) assigns them, stages their memberships under the run's token, and
    stores its partial sums here for the run to combine."""

    run = models.ForeignKey(ClusteringRun, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    first_id = models.UUIDField()
    last_id = models.UUIDField()
    status = models.CharField(
        max_length=10, choices=ChunkStatus.choices, default=ChunkStatus.QUEUED
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    done_by = models.CharField(max_length=200, blank=True, default="")
    seconds = models.FloatField(null=True, blank=True)
    kept_labels = models.JSONField(
        default=dict, blank=True, help_text="Profiles of the fitted sample: the fit's own label."
    )
    partial = models.JSONField(default=dict, blank=True)
    staged_rows = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Memberships it staged (the swap checks they are all there).",
    )
    error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="clustering_chunk_uniq")
        ]

    def __str__(self) -> str:
        return f"chunk {self.index} of run {self.run_id} ({self.status})"
