from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from .models import Event, RejectedEvent, Source


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
    list_display = ("name", "write_key", "enabled", "corrected_times", "created_at")
    list_filter = ("enabled",)
    search_fields = ("name", "write_key")
    readonly_fields = ("created_at", "updated_at", "corrected_times")

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

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # A key already embedded in apps cannot change under them; disable and
        # create a new source to rotate.
        if obj is not None:
            return (*self.readonly_fields, "write_key")
        return self.readonly_fields


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "type",
        "label",
        "user_id",
        "anonymous_id",
        "timestamp",
        "source",
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
        return obj.event or obj.name

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
