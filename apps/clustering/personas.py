"""Persona names from what sets a cluster apart.

For each feature, z is how far the cluster's mean sits from the population's,
in population standard deviations, measured in the scaled space the clusters
were fitted in (so a few huge spenders do not make everyone else "low spend").
The features with the largest |z| (at least ``DISTINCTIVE_Z``) name it, from a
small vocabulary of high and low words; order counts also speak in absolute
terms ("never buys", "one order"), which is what marketers read first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

DISTINCTIVE_Z = 0.5
NAME_WORDS = 3

# feature: (word when high, word when low)
VOCABULARY: dict[str, tuple[str, str]] = {
    "orders_count": ("frequent", "rarely orders"),
    "revenue_total": ("high spend", "low spend"),
    "average_order_value": ("big baskets", "small baskets"),
    "days_since_last_order": ("lapsed", "recent"),
    "active_days": ("often active", "seldom active"),
    "sessions_count": ("many visits", "few visits"),
    "average_session_seconds": ("long sessions", "short sessions"),
    "page_views": ("reads a lot", "few page views"),
    "product_views": ("browses", "few product views"),
    "cart_adds": ("fills carts", "rarely adds to cart"),
    "email_opens": ("opens emails", "ignores emails"),
    "email_clicks": ("clicks emails", "no email clicks"),
    "rfm_recency": ("recent buyer", "long since buying"),
    "rfm_frequency": ("buys often", "buys seldom"),
    "rfm_monetary": ("big spender", "small spender"),
}
# What a buyer-less cluster's order features say nothing about.
ORDER_FEATURES = frozenset(
    {"revenue_total", "average_order_value", "days_since_last_order", "rfm_monetary"}
)


@dataclass
class Profiled:
    """A cluster's feature means against the population, and its distinctive features."""

    feature_means: dict[str, dict[str, float]]
    distinctive: list[dict[str, Any]]


def cluster_profile(
    features: list[str],
    raw: np.ndarray,
    scaled: np.ndarray,
    members: np.ndarray,
) -> Profiled:
    """``raw`` in the features' own units (filled), ``scaled`` as fitted; both
    one column per feature; ``members`` a boolean mask of the cluster's rows."""
    has = bool(members.any())
    return cluster_profile_of_means(
        features,
        cluster_raw=raw[members].mean(axis=0) if has else np.zeros(len(features)),
        population_raw=raw.mean(axis=0),
        cluster_scaled=scaled[members].mean(axis=0) if has else np.zeros(len(features)),
        population_scaled=scaled.mean(axis=0),
        population_scaled_sd=scaled.std(axis=0),
        has_members=has,
    )


def cluster_profile_of_means(
    features: list[str],
    *,
    cluster_raw: np.ndarray,
    population_raw: np.ndarray,
    cluster_scaled: np.ndarray,
    population_scaled: np.ndarray,
    population_scaled_sd: np.ndarray,
    has_members: bool,
) -> Profiled:
    """The same from the means alone (what the chunks of an assignment sum up)."""
    means: dict[str, dict[str, float]] = {}
    scored: list[tuple[float, str]] = []
    for j, name in enumerate(features):
        cluster_mean = float(cluster_raw[j]) if has_members else 0.0
        sd = float(population_scaled_sd[j]) or 1.0
        z = (float(cluster_scaled[j]) - float(population_scaled[j])) / sd if has_members else 0.0
        means[name] = {
            "cluster": round(cluster_mean, 4),
            "population": round(float(population_raw[j]), 4),
            "z": round(z, 3),
        }
        scored.append((z, name))
    orders = means.get("orders_count", {}).get("cluster")
    buyers = orders is None or orders >= 0.1
    distinctive = []
    for z, name in sorted(scored, key=lambda item: (-abs(item[0]), item[1])):
        if abs(z) < DISTINCTIVE_Z or (not buyers and name in ORDER_FEATURES):
            continue
        distinctive.append({"feature": name, "z": round(z, 3), "word": _word(name, z, means)})
    return Profiled(means, distinctive)


def _word(name: str, z: float, means: dict[str, dict[str, float]]) -> str:
    if name == "orders_count":
        mean = means[name]["cluster"]
        if mean < 0.1:
            return "never buys"
        if 0.8 <= mean <= 1.3:
            return "one order"
    high, low = VOCABULARY.get(name, (f"high {name}", f"low {name}"))
    return high if z > 0 else low


def persona_name(profiled: Profiled, taken: Iterable[str], words: int = NAME_WORDS) -> str:
    """A name from the most distinctive words, unique among ``taken``: more words
    where two clusters would share a name, then a number."""
    used = {t.lower() for t in taken}
    parts = [d["word"] for d in profiled.distinctive]
    # "Browses, never buys": what they do before what they do not.
    if "never buys" in parts:
        others = [p for p in parts if p != "never buys"]
        parts = [*others[: words - 1], "never buys", *others[words - 1 :]]
    if not parts:
        parts = ["typical customers"]
    for n in range(min(words, len(parts)), len(parts) + 1):
        name = _sentence(parts[:n])
        if name.lower() not in used:
            return name
    base = _sentence(parts[:words])
    i = 2
    while f"{base} ({i})".lower() in used:
        i += 1
    return f"{base} ({i})"


def _sentence(words: list[str]) -> str:
    text = ", ".join(words)
    return text[:1].upper() + text[1:]


def persona_description(profiled: Profiled, size: int, share: float) -> str:
    lines = [f"{size:,} profiles ({share:.1%} of the population)."]
    for d in profiled.distinctive[:5]:
        m = profiled.feature_means[d["feature"]]
        lines.append(
            f"{d['feature']}: {m['cluster']:.4g} against {m['population']:.4g} overall "
            f"({'+' if d['z'] > 0 else ''}{d['z']:.1f} sd: {d['word']})."
        )
    return " ".join(lines)
