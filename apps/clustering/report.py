"""What a run's page shows a marketer, as plain data (the admin renders it, the
charts are apps/clustering/charts.py): the metric across k, the scatter of the
stored sample, the clusters with what sets each apart and what changed since
the previous run, and the run's facts (status, population, how k was chosen,
stability, timings per phase, sampling, noise)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.urls import reverse

from .charts import colour
from .fitting import knee
from .models import DENSITY_ALGORITHMS, Cluster, ClusteringRun, KSelection, RunStatus
from .run import PHASES

# name in a candidate -> (label, which is better)
METRICS = {
    "silhouette": ("silhouette (on a sample)", "higher"),
    "davies_bouldin": ("Davies-Bouldin index", "lower"),
    "calinski_harabasz": ("Calinski-Harabasz index", "higher"),
    "inertia": ("inertia (within-cluster sum of squares)", "lower"),
}
# The features shown per cluster in the table.
DISTINCTIVE_SHOWN = 4


@dataclass
class MetricSeries:
    metric: str  # a key of METRICS
    label: str
    better: str  # "higher" | "lower"
    points: list[tuple[int, float | None]]  # (k, value) per candidate
    chosen_k: int | None
    knee_k: int | None = None  # marked on the inertia curve
    decides: bool = False  # the metric k was chosen by


@dataclass
class Distinctive:
    feature: str
    word: str
    z: float
    cluster: float | None
    population: float | None

    @property
    def text(self) -> str:
        sign = "+" if self.z > 0 else ""
        if self.cluster is None or self.population is None:
            return f"{self.word} ({sign}{self.z:.1f} sd)"
        return (
            f"{self.word}: {self.feature} {self.cluster:.4g} against {self.population:.4g} "
            f"overall ({sign}{self.z:.1f} sd)"
        )


@dataclass
class ClusterRow:
    cluster: Cluster
    index: int
    persona: str
    description: str
    renamed: bool
    segment_url: str | None
    colour: str  # as in the scatter
    size: int
    share: float
    distinctive: list[Distinctive]
    # Change since the previous run: "new", or matched ("continued") to a previous cluster.
    change: str
    previous_persona: str | None = None
    previous_size: int | None = None
    size_change: int | None = None
    previous_distance: float | None = None

    @property
    def share_text(self) -> str:
        return f"{self.share:.1%}"

    @property
    def change_text(self) -> str:
        if self.change == "first":
            return "first run"
        if self.change == "new":
            return "new since the last run"
        assert self.previous_size is not None and self.size_change is not None
        sign = "+" if self.size_change > 0 else ""
        relative = (
            f", {sign}{self.size_change / self.previous_size:.0%}" if self.previous_size else ""
        )
        named = (
            f"was {self.previous_persona}; "
            if self.previous_persona and self.previous_persona != self.persona
            else ""
        )
        return f"{named}{sign}{self.size_change:,} profiles since the last run{relative}"


@dataclass
class Vanished:
    persona: str
    size: int
    segment_url: str | None


@dataclass
class Fact:
    label: str
    value: str


@dataclass
class RunReport:
    run: ClusteringRun
    flagged: bool  # failed or degenerate: shown prominently
    headline: str
    facts: list[Fact]
    timings: list[tuple[str, float]]
    notes: list[str]
    metrics: list[MetricSeries]
    scatter_axes: list[str]
    scatter_points: list[list[float]]
    scatter_centroids: list[list[float]]
    legend: list[tuple[int, str]]
    clusters: list[ClusterRow]
    vanished: list[Vanished] = field(default_factory=list)
    sample_note: str = ""


def _segment_url(segment_id: int | None) -> str | None:
    if segment_id is None:
        return None
    return reverse("admin:segments_segment_change", args=[segment_id])


def _metrics(run: ClusteringRun) -> list[MetricSeries]:
    """The metric k was chosen by, then one more for context: the elbow (with its
    knee) when k was chosen by another metric, the silhouette when by the elbow."""
    candidates = [c for c in run.candidates if isinstance(c, dict) and "k" in c]
    algorithm = run.params.get("algorithm", run.config.algorithm)
    if algorithm in DENSITY_ALGORITHMS or len(candidates) < 2:
        return []
    selection = run.params.get("k_selection", run.config.k_selection)
    decides = "inertia" if selection == KSelection.ELBOW else selection
    other = "silhouette" if decides == "inertia" else "inertia"
    out = []
    for metric in (decides, other):
        if metric not in METRICS:
            continue
        points = [(int(c["k"]), _number(c.get(metric))) for c in candidates]
        if all(v is None for _, v in points):
            continue
        knee_k = None
        if metric == "inertia":
            scored = [(k, v) for k, v in points if v is not None]
            if len(scored) >= 3:
                knee_k = knee([k for k, _ in scored], [v for _, v in scored])
        label, better = METRICS[metric]
        out.append(
            MetricSeries(
                metric=metric,
                label=label,
                better=better,
                points=points,
                chosen_k=run.chosen_k,
                knee_k=knee_k,
                decides=metric == decides,
            )
        )
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _distinctive(cluster: Cluster) -> list[Distinctive]:
    out = []
    for item in cluster.distinctive[:DISTINCTIVE_SHOWN]:
        name = str(item.get("feature", ""))
        means = cluster.feature_means.get(name, {})
        out.append(
            Distinctive(
                feature=name,
                word=str(item.get("word", name)),
                z=float(item.get("z", 0.0)),
                cluster=_number(means.get("cluster")),
                population=_number(means.get("population")),
            )
        )
    return out


def _rows(run: ClusteringRun, clusters: list[Cluster]) -> list[ClusterRow]:
    rows = []
    for c in clusters:
        prev = c.previous
        if prev is not None:
            change = "continued"
        else:
            change = "new" if run.previous_run_id is not None else "first"
        rows.append(
            ClusterRow(
                cluster=c,
                index=c.index,
                persona=c.persona_name,
                description=c.persona_description,
                renamed=c.renamed,
                segment_url=_segment_url(c.segment_id),
                colour=colour(c.index),
                size=c.size,
                share=c.share,
                distinctive=_distinctive(c),
                change=change,
                previous_persona=prev.persona_name if prev is not None else None,
                previous_size=prev.size if prev is not None else None,
                size_change=c.size - prev.size if prev is not None else None,
                previous_distance=c.previous_distance,
            )
        )
    return rows


def _vanished(run: ClusteringRun, clusters: list[Cluster]) -> list[Vanished]:
    if run.previous_run_id is None or run.status != RunStatus.SUCCEEDED:
        return []
    matched = {c.previous_id for c in clusters if c.previous_id is not None}
    return [
        Vanished(persona=p.persona_name, size=p.size, segment_url=_segment_url(p.segment_id))
        for p in Cluster.objects.filter(run_id=run.previous_run_id).order_by("index")
        if p.pk not in matched
    ]


def _how_chosen(run: ClusteringRun) -> str:
    params = run.params or {}
    algorithm = params.get("algorithm", run.config.algorithm)
    if algorithm in DENSITY_ALGORITHMS:
        found = run.clusters_found if run.clusters_found is not None else run.chosen_k
        return f"{found} found by {algorithm.upper()} (density: the data gives the number)"
    if run.chosen_k is None:
        return "none"
    selection = params.get("k_selection", run.config.k_selection)
    label = KSelection(selection).label if selection in KSelection.values else selection
    k_min, k_max = params.get("k_min"), params.get("k_max")
    tried = f" among k={k_min}..{k_max}" if k_min is not None and k_max is not None else ""
    return f"{run.chosen_k}, by {label}{tried}"


def _headline(run: ClusteringRun) -> str:
    if run.status == RunStatus.FAILED:
        return f"This run failed: {run.error or 'no reason recorded'}. Previous memberships kept."
    if run.status == RunStatus.DEGENERATE:
        return (
            "This run gave degenerate clusters and was not applied: "
            f"{run.error or 'no reason recorded'}. Previous memberships kept."
        )
    if run.status == RunStatus.SUCCEEDED:
        return f"{run.chosen_k} clusters over {run.population_size:,} profiles."
    return f"This run is {run.get_status_display().lower()}."


def _facts(run: ClusteringRun) -> list[Fact]:
    facts = [
        Fact("Status", run.get_status_display()),
        Fact("Config", f"{run.config.name} ({run.config.key})"),
        Fact("Algorithm", _algorithm_label(run)),
        Fact("Population", f"{run.population_size:,} profiles"),
        Fact("Chosen k", _how_chosen(run)),
    ]
    if run.noise_share is not None:
        facts.append(Fact("Noise", f"{run.noise_share:.1%} of the fitted profiles"))
    if run.stability_ari is not None:
        facts.append(
            Fact(
                "Stability against the previous run",
                f"adjusted Rand index {run.stability_ari:.3f} "
                f"on {run.stability_shared or 0:,} profiles both placed",
            )
        )
    elif run.previous_run_id is None:
        facts.append(Fact("Stability against the previous run", "first run of this config"))
    if run.started_at and run.finished_at:
        seconds = (run.finished_at - run.started_at).total_seconds()
        facts.append(Fact("Duration", f"{seconds:.2f} s"))
    return facts


def _algorithm_label(run: ClusteringRun) -> str:
    from .models import Algorithm

    value = (run.params or {}).get("algorithm", run.config.algorithm)
    return Algorithm(value).label if value in Algorithm.values else str(value)


def _timings(run: ClusteringRun) -> list[tuple[str, float]]:
    timings = {k: float(v) for k, v in (run.timings or {}).items() if _number(v) is not None}
    known = [p for p in ("extract", "transform", *PHASES[1:]) if p in timings]
    return [(name, timings[name]) for name in known + sorted(set(timings) - set(known))]


def run_report(run: ClusteringRun) -> RunReport:
    """Everything the run page shows, read from the run and its clusters."""
    clusters = list(run.clusters.select_related("previous").order_by("index"))
    rows = _rows(run, clusters)
    scatter = run.scatter or {}
    sample_note = ""
    if run.fitted_on_sample and run.sample_size is not None:
        sample_note = (
            f"Fitted on a sample of {run.sample_size:,}; the rest assigned to the nearest cluster."
        )
    return RunReport(
        run=run,
        flagged=run.status in (RunStatus.FAILED, RunStatus.DEGENERATE),
        headline=_headline(run),
        facts=_facts(run),
        timings=_timings(run),
        notes=[str(n) for n in (run.notes or [])],
        metrics=_metrics(run),
        scatter_axes=list(scatter.get("axes", ["PC1", "PC2"])),
        scatter_points=list(scatter.get("points", [])),
        scatter_centroids=list(scatter.get("centroids", [])),
        legend=[(c.index, c.persona_name) for c in clusters],
        clusters=rows,
        vanished=_vanished(run, clusters),
        sample_note=sample_note,
    )


__all__ = ["METRICS", "ClusterRow", "MetricSeries", "RunReport", "run_report"]
