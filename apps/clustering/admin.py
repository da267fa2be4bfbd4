"""The clustering admin a marketer uses: each config with its latest runs, its
schedule (a cron line kept in step with its django-celery-beat entry by
config_save) and "Run now"; each run's page, the report (the metric across k,
the PCA scatter of a sample, the clusters with what sets each apart and what
changed since the last run, and the run's facts, a failed or degenerate run
flagged); and the clusters, whose persona name and description a marketer may
rename (cluster_rename, which later runs keep) and nothing else.

Writes go through apps/clustering/services.py, as the API's do."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from .charts import metric_line_chart, scatter_chart
from .models import Cluster, ClusteringConfig, ClusteringRun, RunStatus
from .report import run_report
from .services import RunInProgress, cluster_rename, config_delete, config_save, run_start

LATEST_RUNS = 10
FLAGGED = (RunStatus.FAILED, RunStatus.DEGENERATE)


def _run_link(run: ClusteringRun | None) -> str:
    if run is None:
        return "-"
    url = reverse("admin:clustering_clusteringrun_change", args=[run.pk])
    return format_html('<a href="{}">run {} ({})</a>', url, run.pk, run.get_status_display())


def _status_html(run: ClusteringRun) -> str:
    if run.status in FLAGGED:
        return format_html(
            '<strong class="run-flagged" style="color:#ba2121">{}</strong>',
            run.get_status_display(),
        )
    return str(run.get_status_display())


def _start(request: HttpRequest, config: ClusteringConfig) -> ClusteringRun | None:
    """Queue a run of ``config`` and say what became of it (eager in tests and
    on the embedded defaults, where it has finished by now)."""
    try:
        run = run_start(config=config)
    except RunInProgress as exc:
        messages.warning(
            request, f"{config}: not started, run {exc.run.pk} is {exc.run.status} already."
        )
        return None
    run.refresh_from_db()
    if run.status == RunStatus.QUEUED:
        text = f"{config}: run {run.pk} queued; its page fills in when a worker has run it."
    elif run.status == RunStatus.SUCCEEDED:
        text = f"{config}: run {run.pk} succeeded with {run.chosen_k} clusters."
    else:
        text = f"{config}: run {run.pk} {run.status}: {run.error}"
    level = messages.WARNING if run.status in FLAGGED else messages.SUCCESS
    messages.add_message(request, level, text)
    return run


@admin.register(ClusteringConfig)
class ClusteringConfigAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    change_form_template = "admin/clustering/clusteringconfig/change_form.html"
    list_display = (
        "key",
        "name",
        "algorithm",
        "k_min",
        "k_max",
        "k_selection",
        "schedule",
        "enabled",
        "latest_run",
    )
    list_filter = ("algorithm", "enabled")
    search_fields = ("key", "name")
    readonly_fields = ("current_run_link", "periodic_task")
    actions = ["run_now"]

    @admin.display(description="current run")
    def current_run_link(self, obj: ClusteringConfig) -> str:
        return _run_link(obj.current_run)

    @admin.display(description="latest run")
    def latest_run(self, obj: ClusteringConfig) -> str:
        return _run_link(obj.runs.order_by("-id").first())

    def save_model(
        self, request: HttpRequest, obj: ClusteringConfig, form: Any, change: bool
    ) -> None:
        config_save(config=obj)

    def delete_model(self, request: HttpRequest, obj: ClusteringConfig) -> None:
        config_delete(config=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ClusteringConfig]) -> None:
        for config in queryset:
            config_delete(config=config)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """A config's runs and clusters go with it (config_delete), although
        neither is deleted on its own in admin: no permission of theirs is needed."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        own = {str(m._meta.verbose_name) for m in (ClusteringRun, Cluster)}
        return deleted, counts, set(perms_needed) - own, protected

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except RunInProgress as exc:
            messages.error(request, f"Not deleted: run {exc.run.pk} is {exc.run.status}.")
            url = reverse("admin:clustering_clusteringconfig_change", args=[object_id])
            return HttpResponseRedirect(url)

    @admin.action(description="Run now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[ClusteringConfig]) -> None:
        for config in queryset.order_by("key"):
            _start(request, config)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> Any:
        extra = {**(extra_context or {})}
        config = self.get_object(request, object_id) if object_id else None
        if config is not None and self.has_view_or_change_permission(request, config):
            extra["latest_runs"] = [
                {"run": run, "url": reverse("admin:clustering_clusteringrun_change", args=[run.pk])}
                for run in config.runs.order_by("-id")[:LATEST_RUNS]
            ]
            extra["can_run"] = self.has_change_permission(request, config)
            extra["run_url"] = reverse("admin:clustering_clusteringconfig_run", args=[config.pk])
        return super().changeform_view(request, object_id, form_url, extra)

    def run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        config = get_object_or_404(ClusteringConfig, pk=object_id)
        if not self.has_change_permission(request, config):
            raise PermissionDenied
        _start(request, config)
        return HttpResponseRedirect(
            reverse("admin:clustering_clusteringconfig_change", args=[config.pk])
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/run/",
                self.admin_site.admin_view(require_POST(self.run_view)),
                name="clustering_clusteringconfig_run",
            ),
            *super().get_urls(),
        ]


@admin.register(ClusteringRun)
class ClusteringRunAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A run's page is its report; the run itself is a record, never edited."""

    change_form_template = "admin/clustering/clusteringrun/change_form.html"
    list_display = (
        "id",
        "config",
        "status_display",
        "chosen_k",
        "population_size",
        "stability_ari",
        "created_at",
    )
    list_display_links = ("id",)
    list_filter = ("status", "config")
    list_select_related = ("config",)
    fields = (
        "config",
        "status",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "task_id",
        "params",
    )
    readonly_fields = fields

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: ClusteringRun) -> str:
        return _status_html(obj)

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> Any:
        extra = {**(extra_context or {})}
        run = self.get_object(request, object_id) if object_id else None
        if run is not None and self.has_view_permission(request, run):
            extra.update(_report_context(run))
        return super().changeform_view(request, object_id, form_url, extra)


def _report_context(run: ClusteringRun) -> dict[str, Any]:
    report = run_report(run)
    charts = [
        metric_line_chart(
            title=f"{series.label} by k" + (" (k chosen by this)" if series.decides else ""),
            metric_label=series.label,
            points=series.points,
            chosen_k=series.chosen_k,
            knee_k=series.knee_k,
        )
        for series in report.metrics
    ]
    scatter = (
        scatter_chart(
            title="Profiles on the two main axes (PCA of a sample)",
            axes=report.scatter_axes,
            points=report.scatter_points,
            legend=report.legend,
            centroids=report.scatter_centroids,
        )
        if report.scatter_points
        else None
    )
    return {
        "report": report,
        "metric_charts": charts,
        "scatter_chart": scatter,
        "config_url": reverse("admin:clustering_clusteringconfig_change", args=[run.config_id]),
    }


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A marketer renames a persona (name, description); the rest is the run's."""

    list_display = ("persona_name", "run", "index", "size", "share", "segment", "renamed")
    list_filter = ("run__config",)
    list_select_related = ("run", "segment")
    search_fields = ("persona_name",)
    fields = (
        "persona_name",
        "persona_description",
        "renamed",
        "run",
        "index",
        "segment",
        "size",
        "share",
        "centroid",
        "feature_means",
        "distinctive",
        "previous",
        "previous_distance",
    )
    readonly_fields = tuple(f for f in fields if f not in ("persona_name", "persona_description"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Cluster, form: Any, change: bool) -> None:
        if not {"persona_name", "persona_description"} & set(form.changed_data):
            return
        cluster_rename(cluster=obj, name=obj.persona_name, description=obj.persona_description)
