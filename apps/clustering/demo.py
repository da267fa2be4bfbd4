"""What the demo shows of clustering: the customers grouped by behaviour, with the
number of groups chosen from the data and personas a marketer can read.

Run by ``load_demo`` after the segments (a demo step, registered in
apps/clustering/registrations.py). The config is the one a marketer would start
with: how much and how often people buy, how recently, and how much they browse
and read, counts and money on a log scale.
"""

from __future__ import annotations

from apps.events.demo import demo_steps

from .models import Algorithm, ClusteringConfig, KSelection, RunStatus
from .run import recluster
from .services import config_save

DEMO_KEY = "customer-personas"
DEMO_FEATURES = [
    {"name": "orders_count", "transform": "log1p"},
    {"name": "revenue_total", "transform": "log1p"},
    {"name": "days_since_last_order", "transform": "none"},
    {"name": "sessions_count", "transform": "log1p"},
    {"name": "product_views", "transform": "log1p"},
    {"name": "email_opens", "transform": "log1p"},
]


def demo_clustering() -> str:
    config = ClusteringConfig.objects.filter(key=DEMO_KEY).first()
    if config is None:
        config = config_save(
            config=ClusteringConfig(
                key=DEMO_KEY,
                name="Customer personas",
                description="Customers grouped by what they buy, how often and how "
                "recently, and how much they browse and read; re-run nightly.",
                features=DEMO_FEATURES,
                algorithm=Algorithm.KMEANS,
                k_min=2,
                k_max=8,
                k_selection=KSelection.SILHOUETTE,
                min_cluster_size=5,
            )
        )
    run = recluster(config_id=config.pk)
    if run is None:
        return "  clustering:         another run is in progress; none done"
    if run.status != RunStatus.SUCCEEDED:
        return f"  clustering:         the run did not succeed ({run.status}: {run.error})"
    personas = ", ".join(f"{c.persona_name} {c.size:,}" for c in run.clusters.order_by("-size"))
    return (
        f"  clustering:         {run.chosen_k} personas chosen by silhouette from k = "
        f"{config.k_min}..{config.k_max} ({personas})"
    )


# After the segments (20): the personas are segments beside them.
demo_steps.register("clustering.personas", demo_clustering, order=30)
