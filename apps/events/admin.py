from collections import Counter
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from .auth import source_create, source_write_key_rotate, write_key_cache_clear
from .models import Event, PipelineBatch, RejectedEvent, Source
from .pipeline import pipeline_batch_run, pipeline_batches_retry


class EstimatedCountPaginator(Paginator):
    """COUNT(*) over millions of events is slow on PostgreSQL; use the planner's
    estimate when the table is big and unfiltered counts would not add anything."""

    @cached_property
    def count(self) -> int:
        object_list: Any = self.object_list
        query = object_list.query
        if connection.vendor == "postgresql" and not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = %s",
                    [object_list.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] > 100_000:
                return int(row[0])
        return super().count


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "key", "enabled", "corrected_times", "created_at")
    list_filter = ("enabled",)
    search_fields = ("name", "write_key_prefix")
    readonly_fields = ("key", "created_at", "updated_at", "corrected_times")
    fields = ("name", "enabled", "key", "corrected_times", "created_at", "updated_at")
    actions = ("rotate_write_keys",)

    @admin.display(description="write key", ordering="write_key_prefix")
    def key(self, obj: Source) -> str:
        # Only a digest is stored: the prefix tells keys apart, nothing more.
        if obj.pk is None:
            return "made when saved, and shown once"
        return f"{obj.write_key_prefix}…" if obj.write_key_prefix else "(none: rotate it)"

    def save_model(self, request: HttpRequest, obj: Source, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            write_key_cache_clear(obj.write_key_hash)  # disabled: at once here
            return
        source, raw = source_create(name=obj.name, enabled=obj.enabled)
        obj.pk = source.pk
        messages.warning(
            request,
            f"Source created. Copy its write key now, it is not stored and will not be "
            f"shown again: {raw}",
        )

    @admin.action(
        description="Rotate the write key (the old one stops working)",
        permissions=("change",),
    )
    def rotate_write_keys(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        for source in queryset:
            raw = source_write_key_rotate(source=source)
            messages.warning(
                request,
                f'New write key of "{source.name}": {raw} (copy it now, it is not stored '
                "and will not be shown again; the old key no longer works)",
            )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Source]:
        # Read from the partial index event_time_corrected_idx: only corrected rows.
        corrected = (
            Event.objects.filter(source=OuterRef("pk"), timestamp_corrected=True)
            .order_by()
            .values("source")
            .annotate(n=Count("*"))
            .values("n")
        )
        return (
            super().get_queryset(request).annotate(corrected_count=Coalesce(Subquery(corrected), 0))
        )

    @admin.display(description="events with corrected times", ordering="corrected_count")
    def corrected_times(self, obj: Source) -> str:
        count = getattr(obj, "corrected_count", 0)
        if not count:
            return "0"
        # The events themselves, filtered: what their clients sent is on each one.
        query = urlencode({"source__id__exact": obj.pk, "timestamp_corrected__exact": 1})
        url = f"{reverse('admin:events_event_changelist')}?{query}"
        return format_html('<a href="{}">{}</a>', url, count)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _cut(value: str, length: int) -> str:
    """``value`` cut to ``length`` characters, the whole of it in the title."""
    if len(value) <= length:
        return value
    return format_html('<span title="{}">{}</span>', value, value[: length - 1] + "…")


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    # Fits a 1440-pixel window beside the filters (tests/events/test_admin_browser.py):
    # one "who" column (the user id, else the anonymous id), long values cut with
    # their whole value in a title, times without words.
    list_display = (
        "id",
        "type",
        "label",
        "who",
        "when",
        "source_name",
        "profile_link",
        "processed",
    )
    list_filter = (
        "type",
        "source",
        ("processed_at", admin.EmptyFieldListFilter),
        "timestamp_corrected",
    )
    # Only indexed lookups: events are found by person through their profile page.
    search_fields = ("=message_id",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_select_related = ("source",)
    ordering = ("-id",)

    @admin.display(description="event / name")
    def label(self, obj: Event) -> str:
        return _cut(obj.event or obj.name or "", 32)

    @admin.display(description="user / anonymous id")
    def who(self, obj: Event) -> str:
        if obj.user_id:
            return _cut(obj.user_id, 24)
        return _cut(f"anon {obj.anonymous_id}", 24) if obj.anonymous_id else "-"

    @admin.display(description="timestamp", ordering="timestamp")
    def when(self, obj: Event) -> str:
        return f"{timezone.localtime(obj.timestamp):%Y-%m-%d %H:%M:%S}"

    @admin.display(description="source", ordering="source__name")
    def source_name(self, obj: Event) -> str:
        return _cut(obj.source.name, 20)

    @admin.display(boolean=True)
    def processed(self, obj: Event) -> bool:
        return obj.processed_at is not None

    @admin.display(description="profile")
    def profile_link(self, obj: Event) -> str:
        if obj.profile_id is None:
            return "-"
        return format_html(
            '<a href="/admin/identity/profile/{}/change/">{}</a>',
            obj.profile_id,
            str(obj.profile_id)[:8],
        )


@admin.register(RejectedEvent)
class RejectedEventAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        "source",
        "reason",
        "message",
        "event_type",
        "message_id",
        "path",
    )
    list_filter = ("reason", "source", "event_type")
    search_fields = ("=message_id", "message")
    date_hierarchy = "received_at"
    show_full_result_count = False
    list_select_related = ("source",)


@admin.register(PipelineBatch)
class PipelineBatchAdmin(admin.ModelAdmin):
    """What the pipeline's stages still owe, and why: a batch is here while a stage
    has not passed on it (a few seconds normally). Parked batches gave up after the
    last retry; fix the stage, then retry them."""

    list_display = (
        "id",
        "created_at",
        "events",
        "done",
        "failing_stage",
        "attempts",
        "failures_total",
        "error",
        "next_attempt_at",
        "parked_at",
    )
    list_filter = (("parked_at", admin.EmptyFieldListFilter), "failing_stage")
    ordering = ("-created_at",)
    readonly_fields = [f.name for f in PipelineBatch._meta.fields]
    actions = ["retry"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="events")
    def events(self, obj: PipelineBatch) -> int:
        return len(obj.event_ids)

    @admin.display(description="stages passed")
    def done(self, obj: PipelineBatch) -> str:
        return ", ".join(obj.done_stages) or "-"

    @admin.display(description="last error")
    def error(self, obj: PipelineBatch) -> str:
        return obj.last_error[:120]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        failing = (
            PipelineBatch.objects.exclude(failing_stage="")
            .values("failing_stage")
            .annotate(batches=Count("id"), parked=Count("id", filter=Q(parked_at__isnull=False)))
            .order_by("failing_stage")
        )
        summary = "; ".join(
            f"{row['failing_stage']}: {row['batches']} failing ({row['parked']} parked)"
            for row in failing
        )
        if summary:
            self.message_user(request, f"Failing stages: {summary}.", level=messages.WARNING)
        return super().changelist_view(request, extra_context)

    @admin.action(description="Retry the selected batches now", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[PipelineBatch]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        pipeline_batches_retry(batch_ids=ids)
        results = Counter(pipeline_batch_run(batch_id=i, force=True) for i in ids)
        self.message_user(
            request,
            "Retried: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(results.items())),
        )

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("events.change_pipelinebatch")
