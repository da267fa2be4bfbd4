from __future__ import annotations

from django.contrib import admin

from .models import Cluster, ClusteringConfig, ClusteringRun


@admin.register(ClusteringConfig)
class ClusteringConfigAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("key", "name", "algorithm", "k_min", "k_max", "k_selection", "enabled")
    list_filter = ("algorithm", "enabled")
    search_fields = ("key", "name")
    readonly_fields = ("current_run", "periodic_task")


@admin.register(ClusteringRun)
class ClusteringRunAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "config", "status", "chosen_k", "population_size", "created_at")
    list_filter = ("status", "config")
    readonly_fields = [f.name for f in ClusteringRun._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("persona_name", "run", "index", "size", "share", "segment", "renamed")
    list_filter = ("run__config",)
    search_fields = ("persona_name",)
