"""The numeric part of a run, on numpy arrays only (no database): transform,
fit every candidate, score, choose k, assign. Testable alone; scikit-learn is
imported when a function runs, never when Django loads the app.

The transform, per feature: fill what is missing with the population median,
log1p where asked (counts and money are skewed; negatives are clipped to 0
first), then one scaling for all (z-score, min-max, robust), then optionally
PCA. A feature that is missing for everyone, or constant once filled, carries
no information and is left out with a note; when nothing is left the run fails
("identical profiles").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Ward's tree keeps an n x n condensed distance matrix: 5,000 rows are 100 MB.
AGGLOMERATIVE_MAX_SAMPLE = 5000
# Points in the report's scatter.
SCATTER_POINTS = 1500
# k-means restarts per k: one k-means++ start (scikit-learn's "auto") often
# merges two true clusters and splits a third; three rarely do.
KMEANS_INITS = 3
# k-means searches k on at most this many profiles (every candidate, three starts
# each), then fits the chosen k on everyone from the sample's centroids (one
# start, a few Lloyd iterations): choosing k needs no more, and the search costs
# the same at 1M profiles as at 50,000. At 200,000 profiles and k from 2 to 10 the
# search on everyone took 44 s of 69 s on this machine.
KSEARCH_SAMPLE = 50_000


class DataProblem(Exception):
    """The data cannot be clustered as configured; the message says why."""


class RunTimeout(Exception):
    pass


@dataclass
class Transformer:
    """What turns a profile's raw features into the space the clusters live in."""

    features: list[str]  # kept, in column order
    columns: list[int]  # their positions in the raw matrix
    log1p: list[bool]
    fill: list[float]
    center: list[float]
    scale: list[float]
    pca_mean: list[float] | None = None
    pca_components: list[list[float]] | None = None

    def scaled(self, raw: np.ndarray) -> np.ndarray:
        """Raw features (all the config's columns) to the scaled space, before PCA."""
        x = np.array(raw[:, self.columns], dtype=np.float64, copy=True)
        fill = np.asarray(self.fill)
        missing = np.isnan(x)
        if missing.any():
            x[missing] = np.take(fill, np.nonzero(missing)[1])
        logged = np.asarray(self.log1p, dtype=bool)
        if logged.any():
            x[:, logged] = np.log1p(np.clip(x[:, logged], 0, None))
        x -= np.asarray(self.center)
        x /= np.asarray(self.scale)
        return x

    def project(self, scaled: np.ndarray) -> np.ndarray:
        if self.pca_components is None or self.pca_mean is None:
            return scaled
        return (scaled - np.asarray(self.pca_mean)) @ np.asarray(self.pca_components).T

    def apply(self, raw: np.ndarray) -> np.ndarray:
        return self.project(self.scaled(raw))

    def to_json(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "columns": self.columns,
            "log1p": self.log1p,
            "fill": self.fill,
            "center": self.center,
            "scale": self.scale,
            "pca_mean": self.pca_mean,
            "pca_components": self.pca_components,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transformer:
        return cls(**data)


def transformer_fit(
    raw: np.ndarray,
    features: Sequence[str],
    log1p: Sequence[bool],
    *,
    scaling: str,
    pca_components: int | None,
    random_state: int,
    notes: list[str],
) -> tuple[Transformer, np.ndarray, np.ndarray]:
    """Fit the transform on the population; returns it, the scaled matrix (for
    the personas: one column per kept feature) and the matrix to cluster."""
    if raw.shape[0] == 0:
        raise DataProblem("the population is empty: no profile has features to cluster")
    keep: list[int] = []
    fills: list[float] = []
    centers: list[float] = []
    scales: list[float] = []
    for j, name in enumerate(features):
        column = raw[:, j]
        present = column[~np.isnan(column)]
        if present.size == 0:
            notes.append(f"{name} is missing for every profile: left out")
            continue
        fill = float(np.median(present))
        x = np.where(np.isnan(column), fill, column)
        if log1p[j]:
            x = np.log1p(np.clip(x, 0, None))
        lo, hi = float(x.min()), float(x.max())
        if hi - lo <= 1e-12 * max(1.0, abs(hi)):
            value = _fmt(float(np.median(present)))
            notes.append(f"{name} is the same ({value}) for every profile: left out")
            continue
        if scaling == "minmax":
            center, scale = lo, hi - lo
        elif scaling == "robust":
            q1, median, q3 = np.percentile(x, [25, 50, 75])
            center, scale = float(median), float(q3 - q1)
            if scale <= 1e-12:  # mostly one value (e.g. most never click): fall back
                scale = float(x.std())
                notes.append(f"{name}: interquartile range 0, scaled by its standard deviation")
        else:
            center, scale = float(x.mean()), float(x.std())
        keep.append(j)
        fills.append(fill)
        centers.append(center)
        scales.append(scale)
    if not keep:
        raise DataProblem(
            "every feature is missing or the same for every profile (identical profiles): "
            "nothing tells them apart"
        )
    transformer = Transformer(
        features=[features[j] for j in keep],
        columns=keep,
        log1p=[bool(log1p[j]) for j in keep],
        fill=fills,
        center=centers,
        scale=scales,
    )
    scaled = transformer.scaled(raw)
    if pca_components:
        from sklearn.decomposition import PCA

        n = min(int(pca_components), scaled.shape[1], scaled.shape[0])
        if n < pca_components:
            notes.append(f"PCA to {n} components (asked {pca_components})")
        rng = np.random.default_rng(random_state)
        sample = (
            scaled
            if len(scaled) <= 100_000
            else scaled[rng.choice(len(scaled), 100_000, replace=False)]
        )
        pca = PCA(n_components=n, random_state=random_state).fit(sample)
        transformer.pca_mean = pca.mean_.tolist()
        transformer.pca_components = pca.components_.tolist()
    return transformer, scaled, transformer.project(scaled)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


@dataclass
class Candidate:
    """One fitted candidate: ``labels`` for the fitted points (-1: noise), and
    the centroids in the clustering space."""

    k: int
    labels: np.ndarray
    centroids: np.ndarray
    metrics: dict[str, float | None]
    sizes: list[int]
    valid: bool = True
    why_invalid: str = ""
    noise_share: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "k": self.k,
            **self.metrics,
            "sizes": self.sizes,
            "valid": self.valid,
            "why_invalid": self.why_invalid,
            **({"noise_share": self.noise_share} if self.noise_share is not None else {}),
        }


@dataclass
class FitSettings:
    algorithm: str
    k_min: int
    k_max: int
    k_selection: str
    silhouette_sample_size: int
    fit_sample_size: int
    eps: float
    min_samples: int
    min_cluster_size: int
    max_cluster_share: float
    random_state: int
    deadline: float = math.inf  # time.monotonic() after which the run stops

    @property
    def sampled(self) -> bool:
        return self.algorithm in ("agglomerative", "dbscan", "hdbscan")

    @property
    def density(self) -> bool:
        return self.algorithm in ("dbscan", "hdbscan")


@dataclass
class Fit:
    candidates: list[Candidate]
    chosen: Candidate | None
    sample_index: np.ndarray | None  # rows of the population fitted (None: all)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _check_deadline(settings: FitSettings) -> None:
    if time.monotonic() > settings.deadline:
        raise RunTimeout("the run went over its time limit")


def _centroids(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((k, x.shape[1]))
    for i in range(k):
        members = x[labels == i]
        if len(members):
            out[i] = members.mean(axis=0)
    return out


def _metrics(
    x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, s: FitSettings
) -> dict[str, float | None]:
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    mask = labels >= 0
    xs, ls = x[mask], labels[mask]
    inertia = float(((xs - centroids[ls]) ** 2).sum()) if len(xs) else None
    found = len(np.unique(ls))
    out: dict[str, float | None] = {
        "inertia": inertia,
        "silhouette": None,
        "davies_bouldin": None,
        "calinski_harabasz": None,
    }
    if 2 <= found <= len(xs) - 1:
        sample = min(s.silhouette_sample_size, len(xs))
        try:
            out["silhouette"] = float(
                silhouette_score(xs, ls, sample_size=sample, random_state=s.random_state)
            )
        except ValueError:  # the sample drew one label only
            out["silhouette"] = None
        out["davies_bouldin"] = float(davies_bouldin_score(xs, ls))
        out["calinski_harabasz"] = float(calinski_harabasz_score(xs, ls))
    return out


def _judge(candidate: Candidate, population: int, fitted: int, s: FitSettings) -> None:
    """Flag a candidate the guard rails refuse: too few distinct clusters, one
    holding almost everyone, or one under the minimum size (counted in the
    population, where the fit was on a sample)."""
    assigned = sum(candidate.sizes)
    scale = population / max(fitted, 1)
    if candidate.k < 2 or len([n for n in candidate.sizes if n > 0]) < max(candidate.k, 2):
        candidate.valid = False
        found = len([n for n in candidate.sizes if n > 0])
        candidate.why_invalid = f"only {found} distinct cluster{'s' if found != 1 else ''}"
        return
    top = max(candidate.sizes) / max(assigned, 1)
    if top > s.max_cluster_share:
        candidate.valid = False
        candidate.why_invalid = (
            f"one cluster holds {top:.1%} of the profiles (more than {s.max_cluster_share:.0%})"
        )
        return
    smallest = min(candidate.sizes) * scale
    if smallest < s.min_cluster_size:
        candidate.valid = False
        candidate.why_invalid = (
            f"a cluster of about {round(smallest)} profiles, under the minimum of "
            f"{s.min_cluster_size}"
        )


def knee(ks: Sequence[int], inertias: Sequence[float]) -> int:
    """The elbow of a decreasing curve: the point farthest from the chord joining
    its ends, with both axes normalised to [0, 1]."""
    if len(ks) == 0:
        raise ValueError("no points")
    if len(ks) < 3:
        return int(ks[0])
    x = (np.asarray(ks, dtype=float) - ks[0]) / (ks[-1] - ks[0])
    y = np.asarray(inertias, dtype=float)
    span = y.max() - y.min()
    if span <= 0:
        return int(ks[0])
    y = (y - y.min()) / span
    start, end = np.array([x[0], y[0]]), np.array([x[-1], y[-1]])
    chord = end - start
    norm = np.linalg.norm(chord)
    # Distance of each point to the chord (the 2-D cross product's magnitude).
    distances = np.abs(chord[0] * (y - start[1]) - chord[1] * (x - start[0])) / norm
    return int(ks[int(np.argmax(distances))])


def _choose(candidates: list[Candidate], s: FitSettings) -> Candidate | None:
    valid = [c for c in candidates if c.valid]
    if not valid:
        return None
    if s.density:
        return valid[0]
    if s.k_selection == "elbow":
        ordered = [c for c in candidates if c.metrics["inertia"] is not None]
        at = knee([c.k for c in ordered], [float(c.metrics["inertia"] or 0) for c in ordered])
        return min(valid, key=lambda c: (abs(c.k - at), c.k))
    metric = s.k_selection
    scored = [c for c in valid if c.metrics.get(metric) is not None]
    if not scored:
        return None
    sign = -1.0 if metric == "davies_bouldin" else 1.0
    return max(scored, key=lambda c: (sign * float(c.metrics[metric] or 0), -c.k))


def _sample(n: int, bound: int, random_state: int) -> np.ndarray | None:
    if n <= bound:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, bound, replace=False))


def fit_candidates(x: np.ndarray, s: FitSettings) -> Fit:
    """Fit every candidate on ``x`` (the transformed population), score each,
    and choose one."""
    n = len(x)
    notes: list[str] = []
    timings: dict[str, float] = {}
    clock = time.monotonic()
    sample_index: np.ndarray | None = None
    if s.sampled:
        bound = s.fit_sample_size
        if s.algorithm == "agglomerative":
            bound = min(bound, AGGLOMERATIVE_MAX_SAMPLE)
        sample_index = _sample(n, bound, s.random_state)
    search_index = None if s.sampled else _sample(n, KSEARCH_SAMPLE, s.random_state)
    index = sample_index if search_index is None else search_index
    xf = x if index is None else x[index]
    candidates: list[Candidate] = []
    if s.density:
        candidates.append(_fit_density(xf, s, n))
    else:
        k_max = min(s.k_max, n - 1)
        if k_max < s.k_min:
            raise DataProblem(
                f"the population has {n} profile{'s' if n != 1 else ''}: too few for "
                f"k from {s.k_min} (k must be below the number of profiles)"
            )
        if k_max < s.k_max:
            notes.append(f"k searched up to {k_max} (the population has {n} profiles)")
        candidates = _fit_ks(xf, s, range(s.k_min, k_max + 1))
    for c in candidates:
        _judge(c, n, len(xf), s)
    timings["fit"] = time.monotonic() - clock
    clock = time.monotonic()
    chosen = _choose(candidates, s)
    timings["choose"] = time.monotonic() - clock
    if chosen is not None and search_index is not None:
        clock = time.monotonic()
        _check_deadline(s)
        chosen = _refit(x, chosen, s)
        notes.append(
            f"k searched on a sample of {len(xf):,} profiles; k={chosen.k} fitted on all {n:,}"
        )
        timings["fit"] += time.monotonic() - clock
    return Fit(candidates, chosen, sample_index, notes, timings)


def _refit(x: np.ndarray, chosen: Candidate, s: FitSettings) -> Candidate:
    """The chosen k fitted on everyone, started from the sample's centroids."""
    import warnings

    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if s.algorithm == "minibatch_kmeans":
            model: Any = MiniBatchKMeans(
                n_clusters=chosen.k, init=chosen.centroids, n_init=1, batch_size=4096,
                random_state=s.random_state,
            )  # fmt: skip
        else:
            model = KMeans(
                n_clusters=chosen.k, init=chosen.centroids, n_init=1, random_state=s.random_state
            )
        model.fit(x)
    labels = model.labels_.astype(np.int64)
    sizes = np.bincount(labels, minlength=chosen.k).tolist()
    refit = Candidate(
        chosen.k, labels, np.asarray(model.cluster_centers_, dtype=np.float64),
        chosen.metrics, sizes,
    )  # fmt: skip
    return refit


def _fit_ks(x: np.ndarray, s: FitSettings, ks: range) -> list[Candidate]:
    import warnings

    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    out: list[Candidate] = []
    tree = None
    if s.algorithm == "agglomerative":
        from scipy.cluster.hierarchy import fcluster, linkage

        # One tree, cut at every k (sklearn's estimator would rebuild it per k).
        tree = linkage(x, method="ward")
    for k in ks:
        _check_deadline(s)
        if tree is not None:
            labels = fcluster(tree, t=k, criterion="maxclust").astype(np.int64) - 1
            # Relabel 0..found-1 in order of appearance (fcluster may give fewer).
            _, labels = np.unique(labels, return_inverse=True)
            centroids = _centroids(x, labels, k)
        else:
            with warnings.catch_warnings():
                # Fewer distinct points than k: judged below, not a crash.
                warnings.simplefilter("ignore", ConvergenceWarning)
                if s.algorithm == "minibatch_kmeans":
                    model: Any = MiniBatchKMeans(
                        n_clusters=k, random_state=s.random_state, n_init=3, batch_size=4096
                    )
                else:
                    model = KMeans(n_clusters=k, random_state=s.random_state, n_init=KMEANS_INITS)
                model.fit(x)
            labels = model.labels_.astype(np.int64)
            centroids = np.asarray(model.cluster_centers_, dtype=np.float64)
        sizes = np.bincount(labels, minlength=k).tolist()
        out.append(Candidate(k, labels, centroids, _metrics(x, labels, centroids, s), sizes))
    return out


def _fit_density(x: np.ndarray, s: FitSettings, population: int) -> Candidate:
    from sklearn.cluster import DBSCAN, HDBSCAN

    _check_deadline(s)
    if s.algorithm == "dbscan":
        labels = DBSCAN(eps=s.eps, min_samples=s.min_samples).fit_predict(x)
    else:
        # The minimum cluster size, in the sample's terms.
        scaled = math.ceil(s.min_cluster_size * len(x) / max(population, 1))
        labels = HDBSCAN(
            min_cluster_size=max(5, scaled), min_samples=max(1, s.min_samples), copy=True
        ).fit_predict(x)
    labels = labels.astype(np.int64)
    found = int(labels.max()) + 1 if (labels >= 0).any() else 0
    centroids = _centroids(x, labels, found)
    sizes = np.bincount(labels[labels >= 0], minlength=found).tolist() if found else []
    noise = float((labels < 0).mean()) if len(labels) else 0.0
    candidate = Candidate(found, labels, centroids, _metrics(x, labels, centroids, s), sizes)
    candidate.noise_share = noise
    return candidate


def nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest centroid and its distance (chunked by scikit-learn)."""
    from sklearn.metrics import pairwise_distances_argmin_min

    if len(x) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    labels, distances = pairwise_distances_argmin_min(x, centroids)
    return labels.astype(np.int64), distances.astype(np.float64)


def assign_all(x: np.ndarray, fit: Fit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every profile's cluster (-1: noise of a density fit), its distance to the
    centroid, and whether it was in the fitted sample. K-means labels everyone
    by the nearest centroid; a sampled fit keeps its own labels for the sample
    and gives the rest the nearest centroid."""
    chosen = fit.chosen
    assert chosen is not None
    labels, distances = nearest(x, chosen.centroids)
    fitted = np.zeros(len(x), dtype=bool)
    if fit.sample_index is not None or chosen.noise_share is not None:
        index = fit.sample_index if fit.sample_index is not None else np.arange(len(x))
        fitted[index] = True
        labels[index] = chosen.labels
        own = chosen.labels >= 0
        diffs = x[index[own]] - chosen.centroids[chosen.labels[own]]
        distances[index[own]] = np.sqrt((diffs**2).sum(axis=1))
        distances[index[~own]] = np.nan
    return labels, distances, fitted


def scatter(
    x: np.ndarray,
    labels: np.ndarray | Callable[[np.ndarray], np.ndarray],
    centroids: np.ndarray,
    random_state: int,
) -> dict[str, Any]:
    """A 2-D PCA view of a sample, coloured by cluster, with the centroids.
    ``labels``: everyone's, or what gives the labels of the rows at an index."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(random_state)
    index = (
        rng.choice(len(x), min(SCATTER_POINTS, len(x)), replace=False)
        if len(x)
        else np.empty(0, int)
    )
    sample = x[np.sort(index)]
    if x.shape[1] >= 2 and len(sample) >= 2:
        pca = PCA(n_components=2, random_state=random_state).fit(sample)
        points = pca.transform(sample)
        centres = pca.transform(centroids) if len(centroids) else np.empty((0, 2))
        explained = [round(float(v), 4) for v in pca.explained_variance_ratio_]
    else:
        points = (
            np.column_stack([sample[:, 0], np.zeros(len(sample))])
            if len(sample)
            else np.empty((0, 2))
        )
        centres = (
            np.column_stack([centroids[:, 0], np.zeros(len(centroids))])
            if len(centroids)
            else np.empty((0, 2))
        )
        explained = [1.0, 0.0]
    if not len(x):
        chosen_labels = np.empty(0, int)
    elif callable(labels):
        chosen_labels = np.asarray(labels(np.sort(index)))
    else:
        chosen_labels = labels[np.sort(index)]
    return {
        "axes": ["PC1", "PC2"],
        "explained_variance": explained,
        "points": [
            [round(float(a), 4), round(float(b), 4), int(c)]
            for (a, b), c in zip(points, chosen_labels, strict=True)
        ],
        "centroids": [[round(float(a), 4), round(float(b), 4)] for a, b in centres],
    }


def stability(previous: np.ndarray, labels: np.ndarray) -> tuple[float | None, int]:
    """The adjusted Rand index between the previous clusters (segment ids, 0: none)
    and the new labels (-1: none), on the profiles both placed."""
    from sklearn.metrics import adjusted_rand_score

    shared = (previous > 0) & (labels >= 0)
    count = int(shared.sum())
    if count < 2:
        return None, count
    return float(adjusted_rand_score(previous[shared], labels[shared])), count


def match(new: np.ndarray, old: np.ndarray) -> list[tuple[int, int, float]]:
    """Pair new centroids with old ones (Hungarian assignment on Euclidean
    distance): (new index, old index, distance) for each accepted pair. A pair
    farther apart than half the typical spacing of the old centroids is not the
    same cluster, and is not accepted."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    if len(new) == 0 or len(old) == 0:
        return []
    cost = cdist(new, old)
    rows, cols = linear_sum_assignment(cost)
    if len(old) >= 2:
        spacing = cdist(old, old)[np.triu_indices(len(old), 1)]
        limit = 0.5 * float(np.median(spacing))
    else:
        limit = math.inf
    return [
        (int(r), int(c), float(cost[r, c]))
        for r, c in zip(rows, cols, strict=True)
        if cost[r, c] <= limit
    ]
