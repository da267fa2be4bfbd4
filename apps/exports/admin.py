"""Destinations (kind, settings, consent purpose, identifier and hashing,
segments, schedule), their runs with files to download, and webhook deliveries
with the dead-letter list and a retry action."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponseGone
from django.http.response import HttpResponseBase
from django.urls import path, reverse
from django.utils.html import format_html

from apps.common.crypto import SecretDecryptError

from .files import exports_dir
from .kinds import SettingsError, settings_validate
from .models import (
    Destination,
    DestinationKind,
    ExportFile,
    ExportRun,
    RunMode,
    WebhookDelivery,
)
from .services import (
    NotRunnable,
    RunAlreadyActive,
    destination_save,
    destination_secret_rotate,
    export_run_enqueue,
    schedule_validate,
)
from .webhooks import deliveries_retry, webhook_secret_of


class DestinationForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Destination
        fields = [
            "key",
            "name",
            "kind",
            "settings",
            "purpose",
            "identifier_type",
            "hashing",
            "segments",
            "schedule",
            "enabled",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind:
            try:
                data["settings"] = settings_validate(kind, data.get("settings") or {})
            except SettingsError as exc:
                self.add_error("settings", str(exc))
        try:
            schedule_validate(data.get("schedule") or "")
        except ValueError as exc:
            self.add_error("schedule", str(exc))
        return data


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = DestinationForm
    list_display = ["key", "name", "kind", "enabled", "purpose", "schedule", "last_run"]
    list_filter = ["kind", "enabled"]
    search_fields = ["key", "name"]
    filter_horizontal = ["segments"]
    readonly_fields = ["disabled_reason", "feed_token_prefix", "outbox_cursor", "secret_state"]
    actions = ["run_full", "run_incremental", "rotate_secret"]

    @admin.display(description="Last run")
    def last_run(self, obj: Destination) -> str:
        run = obj.runs.order_by("-created_at", "-id").first()
        return f"{run.status} ({run.created_at:%Y-%m-%d %H:%M})" if run else "never"

    @admin.display(description="Secret")
    def secret_state(self, obj: Destination) -> str:
        if obj.kind == DestinationKind.WEBHOOK:
            if not obj.webhook_secret_encrypted:
                return "-"
            try:
                webhook_secret_of(obj)
            except SecretDecryptError as exc:
                return f"set, but unusable: {exc}"
            return "set, encrypted (shown once when made; rotate to get a new one)"
        if obj.kind == DestinationKind.JSON_FEED:
            return f"token {obj.feed_token_prefix}... (hashed)" if obj.feed_token_hash else "-"
        return "-"

    def save_model(self, request: HttpRequest, obj: Destination, form: Any, change: bool) -> None:
        saved = destination_save(destination=obj)
        if saved.secret:
            self._show_secret(request, obj, saved.secret)

    def _show_secret(self, request: HttpRequest, obj: Destination, secret: str) -> None:
        what = "signing secret" if obj.kind == DestinationKind.WEBHOOK else "feed token"
        messages.warning(
            request,
            f"The {what} of {obj.key}, shown this once (copy it now): {secret}",
        )

    def _run(self, request: HttpRequest, queryset: QuerySet[Destination], mode: str) -> None:
        for destination in queryset:
            try:
                run = export_run_enqueue(destination=destination, mode=mode)
            except (RunAlreadyActive, NotRunnable) as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"Run {run.pk} of {destination.key} started ({mode}).")

    @admin.action(description="Run now: full", permissions=["change"])
    def run_full(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        self._run(request, queryset, RunMode.FULL)

    @admin.action(
        description="Run now: incremental (outbox changes since the last run)",
        permissions=["change"],
    )
    def run_incremental(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        self._run(request, queryset, RunMode.INCREMENTAL)

    @admin.action(description="Rotate the webhook secret or feed token", permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        for destination in queryset:
            try:
                secret = destination_secret_rotate(destination=destination)
            except NotRunnable as exc:
                messages.error(request, str(exc))
            else:
                self._show_secret(request, destination, secret)


class ExportFileInline(admin.TabularInline):  # type: ignore[type-arg]
    model = ExportFile
    fields = ["download", "rows", "size", "sha256"]
    readonly_fields = ["download", "rows", "size", "sha256"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="File")
    def download(self, obj: ExportFile) -> str:
        if obj.expired_at is not None:
            return format_html(
                '{} <span class="export-file-expired">(expired {}: deleted after the'
                " retention of {} days)</span>",
                obj.name,
                obj.expired_at.date().isoformat(),
                settings.CDP.get("EXPORT_FILE_RETENTION_DAYS", 30),
            )
        url = reverse("admin:exports_exportfile_download", args=[obj.pk])
        if obj.expire_error:
            return format_html(
                '<a href="{}">{}</a> <span class="export-file-expire-error">(past the'
                " retention but not deleted: {}; retried daily)</span>",
                url,
                obj.name,
                obj.expire_error,
            )
        return format_html('<a href="{}">{}</a>', url, obj.name)


@admin.register(ExportRun)
class ExportRunAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "id",
        "destination",
        "status",
        "mode",
        "trigger",
        "profiles",
        "rows",
        "files",
        "skipped_consent",
        "skipped_segments",
        "duration_ms",
        "created_at",
    ]
    list_filter = ["status", "mode", "trigger", "destination"]
    inlines = [ExportFileInline]
    readonly_fields = [f.name for f in ExportRun._meta.fields]

    @admin.display(description="Segments skipped (below minimum)")
    def skipped_segments(self, obj: ExportRun) -> str:
        return ", ".join(obj.segments_skipped) or "-"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        download = self.admin_site.admin_view(self.download_view)
        return [
            path("file/<int:file_id>/download/", download, name="exports_exportfile_download"),
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, file_id: int) -> HttpResponseBase:
        # The files name people: only who may see runs and their files downloads.
        if not (
            request.user.has_perm("exports.view_exportrun")
            and request.user.has_perm("exports.view_exportfile")
        ):
            raise PermissionDenied
        row = ExportFile.objects.filter(pk=file_id).first()
        if row is None:
            raise Http404("no such file")
        if row.expired_at is not None:
            return HttpResponseGone(
                f"The file {row.name} of export run {row.run_id} expired on "
                f"{row.expired_at.date().isoformat()}: files are deleted "
                f"{settings.CDP.get('EXPORT_FILE_RETENTION_DAYS', 30)} days after their run "
                "(CDP_EXPORT_FILE_RETENTION_DAYS). The run's record remains; start a new "
                "run to export the audience again.",
                content_type="text/plain; charset=utf-8",
            )
        root = exports_dir().resolve()
        target = (root / row.path).resolve()
        if root not in target.parents or not target.is_file():
            raise Http404("the file is gone")
        return FileResponse(open(target, "rb"), as_attachment=True, filename=row.name)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # The body is not shown: it names a person (her identifier, maybe hashed).
    list_display = [
        "message_id",
        "destination",
        "event_type",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "event_type", "destination"]
    search_fields = ["message_id"]
    exclude = ["body"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields if f.name != "body"]
    actions = ["retry"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Retry (dead letters and cancelled)", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = deliveries_retry(delivery_ids=list(queryset.values_list("pk", flat=True)))
        messages.success(request, f"{count} deliveries queued again.")
