"""Profiles made from known behavioural archetypes, written as ProfileFeatures
rows with bulk_create (a few thousand in well under a second), so that a run
has a truth to recover.

Two independent generators: ``ARCHETYPES`` (five customer types, log-normal
counts and money around each type's means) and ``blobs_population`` (scikit-
learn's make_blobs in four dimensions, mapped onto features), so that the choice
of k is not tuned to one generator.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import numpy as np
from django.utils import timezone

from apps.identity.models import Profile
from apps.segments.models import ProfileFeatures

FEATURES = [
    {"name": "orders_count", "transform": "log1p"},
    {"name": "revenue_total", "transform": "log1p"},
    {"name": "average_order_value", "transform": "log1p"},
    {"name": "days_since_last_order", "transform": "log1p"},
    {"name": "product_views", "transform": "log1p"},
    {"name": "sessions_count", "transform": "log1p"},
]


@dataclass(frozen=True)
class Archetype:
    name: str
    orders: float  # mean orders (0: never orders)
    order_value: float  # mean money per order
    days_since_order: float
    product_views: float
    sessions: float


ARCHETYPES = [
    Archetype("loyal big spenders", 30, 200, 4, 60, 30),
    Archetype("bargain hunters", 12, 15, 20, 300, 60),
    Archetype("one-time buyers", 1, 60, 40, 8, 3),
    Archetype("browsers who never buy", 0, 0, 0, 90, 25),
    Archetype("lapsed customers", 6, 70, 300, 4, 2),
]


@dataclass
class Population:
    profile_ids: list[uuid.UUID]
    labels: np.ndarray  # archetype index per profile


def _lognormal(rng: np.random.Generator, mean: float, n: int, spread: float) -> np.ndarray:
    return rng.lognormal(np.log(max(mean, 1e-9)), spread, n)


def _write(columns: dict[str, np.ndarray], seen_days: np.ndarray) -> list[uuid.UUID]:
    now = timezone.now()
    n = len(seen_days)
    profiles = [Profile(id=uuid.uuid4()) for _ in range(n)]
    Profile.objects.bulk_create(profiles, batch_size=2000)
    rows = []
    orders = columns["orders_count"]
    for i, profile in enumerate(profiles):
        count = int(orders[i])
        first_seen = now - timedelta(days=float(seen_days[i]))
        rows.append(
            ProfileFeatures(
                profile_id=profile.id,
                orders_count=count,
                revenue_total=Decimal(f"{columns['revenue_total'][i]:.2f}") if count else 0,
                last_order_at=now - timedelta(days=float(columns["days"][i])) if count else None,
                first_order_at=first_seen if count else None,
                first_seen_at=first_seen,
                last_seen_at=now,
                product_views=int(columns["product_views"][i]),
                sessions_count=int(columns["sessions_count"][i]),
                page_views=int(columns["product_views"][i]) * 2,
            )
        )
    ProfileFeatures.objects.bulk_create(rows, batch_size=2000)
    return [p.id for p in profiles]


def archetype_population(
    per_type: int = 500,
    *,
    seed: int = 1,
    spread: float = 0.25,
    archetypes: list[Archetype] = ARCHETYPES,
) -> Population:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(archetypes)), per_type)
    rng.shuffle(labels)
    n = len(labels)
    orders = np.zeros(n)
    revenue = np.zeros(n)
    days = np.zeros(n)
    views = np.zeros(n)
    sessions = np.zeros(n)
    for i, a in enumerate(archetypes):
        m = labels == i
        k = int(m.sum())
        if a.orders == 1:
            orders[m] = 1
        elif a.orders > 0:
            orders[m] = np.maximum(2, np.round(_lognormal(rng, a.orders, k, spread)))
        revenue[m] = orders[m] * _lognormal(rng, max(a.order_value, 1), k, spread)
        days[m] = _lognormal(rng, max(a.days_since_order, 1), k, spread)
        views[m] = np.round(_lognormal(rng, max(a.product_views, 1), k, spread))
        sessions[m] = np.maximum(1, np.round(_lognormal(rng, a.sessions, k, spread)))
    # Never-buyers: days since first seen stands in for days since the last order.
    seen = np.where(orders > 0, days + rng.uniform(30, 60, n), rng.uniform(20, 40, n))
    ids = _write(
        {
            "orders_count": orders,
            "revenue_total": revenue,
            "days": days,
            "product_views": views,
            "sessions_count": sessions,
        },
        seen,
    )
    return Population(ids, labels)


BLOB_FEATURES = [
    {"name": "orders_count", "transform": "log1p"},
    {"name": "product_views", "transform": "log1p"},
    {"name": "sessions_count", "transform": "log1p"},
    {"name": "email_opens", "transform": "log1p"},
]


def blobs_population(n: int = 2000, centers: int = 4, *, seed: int = 7) -> Population:
    """make_blobs in log space, mapped to counts: another world with another k."""
    from sklearn.datasets import make_blobs

    x, labels = make_blobs(
        n_samples=n, n_features=4, centers=centers, cluster_std=0.35, center_box=(0.5, 5.5),
        random_state=seed,
    )  # fmt: skip
    counts = np.round(np.expm1(np.clip(x, 0, None)))
    now = timezone.now()
    profiles = [Profile(id=uuid.uuid4()) for _ in range(n)]
    Profile.objects.bulk_create(profiles, batch_size=2000)
    ProfileFeatures.objects.bulk_create(
        [
            ProfileFeatures(
                profile_id=p.id,
                orders_count=int(counts[i, 0]),
                product_views=int(counts[i, 1]),
                sessions_count=int(counts[i, 2]),
                email_opens=int(counts[i, 3]),
                first_seen_at=now - timedelta(days=30),
                last_seen_at=now,
            )
            for i, p in enumerate(profiles)
        ],
        batch_size=2000,
    )
    return Population([p.id for p in profiles], labels)
