"""The segments admin a marketer uses: the segment list, the builder (forms that
write the public condition JSON, a live count and sample), and each segment's
page with its size over time, refresh history and members with their reasons.
Memberships, the outbox and refreshes are read-only records.

Writes go through apps/segments/memberships.py as the API's do (segment_save
validates, stores references and refreshes; segment_delete refuses a segment
others refer to); cluster segments are read-only here, clustering writes them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from . import admin_context  # noqa: F401  (the profile page's segments section)
from .admin_views import builder_config, detail_context, preview_view
from .api.serializers import external_id
from .forms import SegmentForm
from .memberships import (
    SegmentInUse,
    reason_lines,
    segment_delete,
    segment_refresh,
    segment_save,
)
from .models import Membership, MembershipChange, Segment, SegmentKind, SegmentRefresh


def _lines_html(lines: list[str]) -> str:
    return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines)) or "-"


def _profile_link(profile_id: Any) -> str:
    url = reverse("admin:identity_profile_change", args=[profile_id])
    return format_html('<a href="{}">{}</a>', url, external_id(profile_id))


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    change_form_template = "admin/segments/segment/change_form.html"
    list_display = (
        "key",
        "name",
        "kind",
        "size",
        "activated_display",
        "enabled",
        "refreshed_at",
        "version",
    )
    list_display_links = ("key", "name")
    list_filter = ("kind", "enabled")
    search_fields = ("key", "name")
    search_help_text = "Part of the key or the name."
    ordering = ("key",)
    actions = ["refresh_now"]

    class Media:
        css = {"all": ("segments/builder.css",)}
        js = ("segments/builder.js",)

    @admin.display(description="activated", boolean=True)
    def activated_display(self, obj: Segment) -> bool:
        return obj.activated

    @admin.display(description="condition")
    def condition_cluster(self, obj: Segment) -> str:
        return "None: the members are written by clustering."

    def get_fieldsets(self, request: HttpRequest, obj: Segment | None = None) -> Any:
        if obj is not None and obj.kind == SegmentKind.CLUSTER:
            return [
                (None, {"fields": ["key", "name", "description", "kind"]}),
                ("Members", {"fields": ["condition_cluster", "size", "activated_display"]}),
                ("State", {"fields": ["min_size", "enabled", "version", "refreshed_at"]}),
            ]
        fieldsets: list[Any] = [
            (None, {"fields": ["key", "name", "description"]}),
            (
                "Who is in it",
                {
                    "fields": ["condition"],
                    "description": "Add conditions with the buttons; the count of "
                    "matching profiles updates as you go. Nothing is saved until you "
                    "press Save.",
                },
            ),
            ("Activation", {"fields": ["min_size", "enabled"]}),
        ]
        if obj is not None:
            fieldsets.append(
                (
                    "State",
                    {"fields": ["kind", "size", "activated_display", "version", "refreshed_at"]},
                )
            )
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Segment | None = None) -> Any:
        if obj is None:
            return ()
        return ("key", "kind", "size", "activated_display", "version", "refreshed_at")

    # Cluster segments: their members are written by clustering, so the page is
    # a view (Django shows every field read-only) and they are not deleted here.
    def has_change_permission(self, request: HttpRequest, obj: Segment | None = None) -> bool:
        if obj is not None and obj.kind != SegmentKind.RULE:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Segment | None = None) -> bool:
        if obj is not None and obj.kind != SegmentKind.RULE:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # One at a time from its page, where a segment others refer to is
        # refused with their names (segment_delete).
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request: HttpRequest, obj: Segment, form: Any, change: bool) -> None:
        data = form.cleaned_data
        saved = segment_save(
            key=obj.key,
            name=data["name"],
            description=data.get("description", ""),
            condition=data["condition"],
            min_size=data["min_size"],
            enabled=data["enabled"],
            segment=obj,
        )
        self.message_user(
            request,
            f"Refreshed: {saved.size} profile{'s' if saved.size != 1 else ''} "
            f"{'are' if saved.size != 1 else 'is'} in {saved.key} now (version {saved.version}).",
            messages.INFO,
        )

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # A segment's memberships, outbox rows and refreshes go with it (they are
        # its history, read-only on their own): counted, not listed one by one (a
        # segment can have millions) and not asking for permissions on each.
        segments = list(objs)
        counts = {
            model._meta.verbose_name_plural: model.objects.filter(segment__in=segments).count()
            for model in (Membership, MembershipChange, SegmentRefresh)
        }
        shown = [format_html("Segment: {}", s.key) for s in segments]
        return shown, {k: n for k, n in counts.items() if n}, set(), []

    def delete_model(self, request: HttpRequest, obj: Segment) -> None:
        segment_delete(obj)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except SegmentInUse as exc:
            self.message_user(
                request,
                "This segment was not deleted: other segments refer to it ("
                + ", ".join(exc.keys)
                + "). Change their conditions first.",
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:segments_segment_change", args=[object_id]))

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> Any:
        segment = self.get_object(request, object_id) if object_id else None
        extra = {**(extra_context or {})}
        editable = (
            self.has_change_permission(request, segment)
            if segment is not None
            else self.has_add_permission(request)
        )
        if editable:
            extra["builder_config"] = builder_config(segment)
        if segment is not None and self.has_view_or_change_permission(request, segment):
            extra.update(detail_context(request, segment))
        return super().changeform_view(request, object_id, form_url, extra)

    @admin.action(description="Refresh now", permissions=["change"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        for segment in queryset.order_by("key"):
            if segment.kind != SegmentKind.RULE or segment.condition is None:
                self.message_user(
                    request,
                    f"{segment.key}: not refreshed, its members are written by clustering.",
                    messages.WARNING,
                )
                continue
            record = segment_refresh(segment)
            self.message_user(
                request,
                f"{segment.key}: {record.entered} entered, {record.exited} exited, "
                f"{record.size} members (version {record.version}).",
                messages.SUCCESS,
            )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "preview/",
                self.admin_site.admin_view(preview_view),
                name="segments_segment_preview",
            ),
            *super().get_urls(),
        ]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the segments machinery: to read, not to edit."""

    show_full_result_count = False
    list_select_related = ("segment",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="profile")
    def profile_link(self, obj: Any) -> str:
        return _profile_link(obj.profile_id)


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ("segment", "profile_link", "entered_at", "exited_at", "source", "version")
    list_filter = ("segment", "source", ("exited_at", admin.EmptyFieldListFilter))
    ordering = ("-id",)
    fields = (
        "segment",
        "profile_link",
        "entered_at",
        "exited_at",
        "source",
        "version",
        "reason_text",
        "exit_reason_text",
    )
    readonly_fields = fields

    @admin.display(description="why it entered")
    def reason_text(self, obj: Membership) -> str:
        return _lines_html(reason_lines(obj.reason or {}))

    @admin.display(description="why it left")
    def exit_reason_text(self, obj: Membership) -> str:
        return _lines_html(reason_lines(obj.exit_reason or {}))


@admin.register(MembershipChange)
class MembershipChangeAdmin(ReadOnlyAdmin):
    list_display = ("id", "segment", "profile_link", "kind", "at", "source", "version")
    list_filter = ("kind", "source", "segment")
    ordering = ("-id",)
    fields = ("segment", "profile_link", "kind", "at", "source", "version")
    readonly_fields = fields


@admin.register(SegmentRefresh)
class SegmentRefreshAdmin(ReadOnlyAdmin):
    list_display = (
        "segment",
        "version",
        "started_at",
        "duration_ms",
        "entered",
        "exited",
        "size",
        "method",
    )
    list_filter = ("method", "segment")
    ordering = ("-started_at",)
    fields = (*list_display, "finished_at")
    readonly_fields = fields
