from django.apps import AppConfig


class ClusteringConfig(AppConfig):
    name = "apps.clustering"
    label = "clustering"
    verbose_name = "Clustering and personas"

    def ready(self) -> None:
        # The "clustering.assign" pipeline stage (apps/events/pipeline.py).
        from . import registrations  # noqa: F401
