from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from apps.common.exceptions import ApplicationError
from apps.common.queue import task_send
from apps.common.validators import contains_nul

from .models import (
    OPEN_STATUSES,
    CategoryMapping,
    ConsentRecord,
    DataSubjectRequest,
    ErasureHookOutcome,
    Purpose,
    RequestEvent,
    RequestStatus,
    SuppressionEntry,
)
from .selectors import consent_config_clear
from .services.dsr import dsr_actions, dsr_erasure_stopped


class CategoryMappingInline(admin.TabularInline):
    model = CategoryMapping
    extra = 1
    verbose_name = "consent-manager category"
    verbose_name_plural = "Consent-manager categories mapped to this purpose"


@admin.register(Purpose)
class PurposeAdmin(SimpleHistoryAdmin):
    list_display = [
        "key",
        "name",
        "legal_basis",
        "required",
        "default_granted",
        "expiry_days",
        "gates",
    ]
    search_fields = ["key", "name"]
    inlines = [CategoryMappingInline]
    fieldsets = [
        (None, {"fields": ["key", "name", "description", "legal_basis", "required"]}),
        ("State", {"fields": ["default_granted", "expiry_days"]}),
        ("Notice", {"fields": ["notice_version", "notice_text"]}),
        (
            "What it gates",
            {
                "fields": [
                    "gates_storage",
                    "storage_policy",
                    "anonymized_properties",
                    "gates_personalization",
                    "gated_destinations",
                    "gpc_opt_out",
                ]
            },
        ),
    ]

    @admin.display(description="Gates")
    def gates(self, obj: Purpose) -> str:
        parts = []
        if obj.gates_storage:
            parts.append(f"storage ({obj.get_storage_policy_display().lower()})")
        if obj.gates_personalization:
            parts.append("personalization")
        parts += [f"export to {d}" for d in obj.gated_destinations or []]
        if obj.gpc_opt_out:
            parts.append("GPC opt-out")
        return ", ".join(parts) or "—"

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        transaction.on_commit(consent_config_clear)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A purpose with statements is evidence; PROTECT would refuse anyway.
        if obj is not None and obj.records.exists():
            return False
        return super().has_delete_permission(request, obj)


class ConsentRecordForm(forms.ModelForm):
    class Meta:
        model = ConsentRecord
        fields = [
            "profile",
            "purpose",
            "status",
            "given_at",
            "method",
            "notice_version",
            "page_url",
        ]
        help_texts = {
            "method": 'How it was given: "paper form", "phone call", "email reply"...',
        }


@admin.register(ConsentRecord)
class ConsentRecordAdmin(admin.ModelAdmin):
    """The consent log: read-only; admins may add a statement (audited as theirs)."""

    form = ConsentRecordForm
    list_display = [
        "given_at",
        "profile_link",
        "purpose",
        "status",
        "source",
        "method",
        "entered_by",
    ]
    list_filter = ["purpose", "status", "source"]
    list_select_related = ["purpose", "entered_by"]
    raw_id_fields = ["profile"]
    date_hierarchy = "given_at"
    search_fields = ["=profile__id"]

    @admin.display(description="Profile")
    def profile_link(self, obj: ConsentRecord) -> str:
        url = reverse("admin:identity_profile_change", args=[obj.profile_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.profile_id)[:8])

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("given_at", timezone.now())  # type: ignore[arg-type]
        return initial

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return []
        return [f.name for f in ConsentRecord._meta.fields]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ConsentRecordForm.Meta.fields
        return [f.name for f in ConsentRecord._meta.fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        from .services import consent_record

        record = consent_record(
            profile_id=obj.profile_id,
            purpose=obj.purpose.key,
            status=obj.status,
            source="admin",
            given_at=obj.given_at,
            method=obj.method,
            notice_version=obj.notice_version or None,
            page_url=obj.page_url,
            entered_by=request.user,
        )
        obj.pk = record.pk

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: Any = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: Any = None
    ) -> HttpResponse:
        self.message_user(request, "The consent statement was recorded.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:identity_profile_change", args=[obj.profile_id]))


class DeadlineFilter(admin.SimpleListFilter):
    title = "deadline"
    parameter_name = "deadline"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("overdue", "Overdue"),
            ("soon", "Due within 7 days"),
            ("open", "All open"),
            ("closed", "Closed"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        today = timezone.localdate()
        if self.value() == "overdue":
            return queryset.filter(status__in=OPEN_STATUSES, due_date__lt=today)
        if self.value() == "soon":
            return queryset.filter(
                status__in=OPEN_STATUSES,
                due_date__gte=today,
                due_date__lte=today + timedelta(days=7),
            )
        if self.value() == "open":
            return queryset.filter(status__in=OPEN_STATUSES)
        if self.value() == "closed":
            return queryset.exclude(status__in=OPEN_STATUSES)
        return queryset


class RequestEventInline(admin.TabularInline):
    model = RequestEvent
    extra = 0
    can_delete = False
    fields = ["at", "actor", "action", "from_status", "to_status", "note"]
    readonly_fields = ("at", "actor", "action", "from_status", "to_status", "note")
    verbose_name_plural = "Trail"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class HookOutcomeInline(admin.TabularInline):
    model = ErasureHookOutcome
    extra = 0
    can_delete = False
    fields = ["hook", "outcome", "attempts", "next_attempt_at", "message", "at"]
    readonly_fields = ("hook", "outcome", "attempts", "next_attempt_at", "message", "at")
    verbose_name_plural = "Deletion hooks (export destinations)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DsrAddForm(forms.ModelForm):
    class Meta:
        model = DataSubjectRequest
        fields = ["type", "subject", "received_at", "details"]

    def clean_subject(self) -> str:
        from .services.dsr import RequestRefused, dsr_subject_clean

        try:
            return dsr_subject_clean(self.cleaned_data["subject"])
        except RequestRefused as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean_received_at(self) -> Any:
        from .services.dsr import RequestRefused, dsr_received_at_check

        received = self.cleaned_data["received_at"]
        try:
            dsr_received_at_check(received)
        except RequestRefused as exc:
            raise forms.ValidationError(exc.message) from exc
        return received


SUBJECT_CHARS = 32


def _cut(value: str, length: int) -> str:
    """``value`` cut to ``length`` characters, the whole of it in the title."""
    shown = value if len(value) <= length else value[: length - 1] + "…"
    return format_html('<span title="{}">{}</span>', value, shown)


# A function rather than an admin method named "subject": the change page shows the
# subject field in full, and its column keeps the class "field-subject".
@admin.display(description="Subject", ordering="subject")
def subject(obj: DataSubjectRequest) -> str:
    return _cut(obj.subject, SUBJECT_CHARS)


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(SimpleHistoryAdmin):
    # Fits a 1440-pixel window beside the filters (tests/consent/test_admin_browser.py):
    # the date received is on the change page, and long subjects are cut.
    list_display = ["short_id", "kind", subject, "status", "deadline", "progress_bar"]
    list_filter = [DeadlineFilter, "status", "type"]
    search_fields = ["subject"]
    inlines = [RequestEventInline, HookOutcomeInline]
    change_form_template = "admin/consent/datasubjectrequest/change_form.html"

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = DsrAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return DsrAddForm.Meta.fields
        return [
            "type",
            "subject",
            "status",
            "received_at",
            "due_date",
            "extension_months",
            "extension_reason",
            "details",
            "progress",
            "progress_note",
            "erasure_summary",
            "completed_at",
            "created_by",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else self.get_fields(request, obj)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("received_at", timezone.now())  # type: ignore[arg-type]
        return initial

    def get_ordering(self, request: HttpRequest) -> list[str]:
        # Open requests first, the most urgent at the top. The changelist orders by
        # this (else by Meta.ordering) ahead of the queryset's own order_by, so the
        # order must be given here for the list to show it.
        return ["_open", "due_date", "received_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Not super(): it orders by get_ordering() before "_open" is annotated.
        return (
            self.model._default_manager.get_queryset()
            .annotate(
                _open=Case(
                    When(status__in=OPEN_STATUSES, then=Value(0)),
                    default=Value(1),
                    output_field=IntegerField(),
                )
            )
            .order_by(*self.get_ordering(request))
        )

    @admin.display(description="ID")
    def short_id(self, obj: DataSubjectRequest) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="Type", ordering="type")
    def kind(self, obj: DataSubjectRequest) -> str:
        # "Erasure (Art. 17)" -> "Erasure": the article is in the title.
        label = obj.get_type_display()
        return format_html('<span title="{}">{}</span>', label, label.split(" (")[0])

    @admin.display(description="Due", ordering="due_date")
    def deadline(self, obj: DataSubjectRequest) -> str:
        if not obj.is_open:
            return format_html('<span style="color:#666">{}</span>', obj.due_date)
        days = (obj.due_date - timezone.localdate()).days
        if days < 0:
            color, text = "#c62828", f"overdue by {-days} day{'s' if days != -1 else ''}"
        elif days <= 7:
            color, text = "#ef6c00", f"in {days} day{'s' if days != 1 else ''}"
        else:
            color, text = "#2e7d32", f"in {days} days"
        return format_html(
            '<strong class="deadline" style="color:{}">{}</strong> ({})', color, obj.due_date, text
        )

    @admin.display(description="Progress")
    def progress_bar(self, obj: DataSubjectRequest) -> str:
        bar = format_html(
            '<progress max="100" value="{}" title="{}"></progress> {}%',
            obj.progress,
            obj.progress_note,
            obj.progress,
        )
        if (obj.erasure_summary or {}).get("hooks_failed"):
            return format_html(
                '{} <strong class="with-failures" style="color:#c62828">with failures</strong>',
                bar,
            )
        if dsr_erasure_stopped(obj):
            return format_html(
                '{} <strong class="stopped" style="color:#c62828">stopped</strong>', bar
            )
        return bar

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the record of a request is the controller's proof

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        from .services.dsr import dsr_create

        created = dsr_create(
            type=obj.type,
            subject=obj.subject,
            received_at=obj.received_at,
            details=obj.details,
            actor=request.user,
        )
        obj.pk = created.pk
        obj.due_date = created.due_date

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        # What the page offers is what the services allow (the API refuses the rest
        # with the same messages); only the permissions are the admin's own.
        actions = dsr_actions(request=obj) if obj is not None else None
        failed_hooks = (obj.erasure_summary or {}).get("hooks_failed") if obj else None
        if failed_hooks and request.method == "GET":
            self.message_user(
                request,
                "Completed with failures: the deletion hook(s) "
                f"{', '.join(failed_hooks)} failed after every attempt. Delete the person "
                "in those destinations by hand.",
                messages.WARNING,
            )
        if obj is not None and dsr_erasure_stopped(obj) and request.method == "GET":
            self.message_user(request, f"The erasure stopped: {obj.progress_note}", messages.ERROR)
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "can_process": request.user.has_perm("consent.process_datasubjectrequest"),
            "can_export": request.user.has_perm("consent.export_datasubjectrequest")
            and actions is not None
            and actions.can_export,
            "next_statuses": [(s, RequestStatus(s).label) for s in actions.next_statuses]
            if actions
            else [],
            "can_erase": actions is not None and actions.can_erase,
            "can_resume": actions is not None and actions.can_resume,
            "extension_months": actions.extension_months if actions else (),
            "can_extend": bool(actions and actions.extension_months),
            "can_rectify": actions is not None and actions.can_rectify,
            "can_object": actions is not None and actions.can_object,
            "purposes": Purpose.objects.filter(required=False).order_by("key"),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<uuid:pk>/workflow/",
                self.admin_site.admin_view(self.workflow_view),
                name="consent_datasubjectrequest_workflow",
            ),
            path(
                "<uuid:pk>/export/",
                self.admin_site.admin_view(self.export_view),
                name="consent_datasubjectrequest_export",
            ),
            *super().get_urls(),
        ]

    def workflow_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        from .services.dsr import dsr_extend, dsr_object, dsr_rectify, dsr_transition
        from .services.erasure import erasure_resume, erasure_start
        from .tasks import erasure_run as erasure_run_task

        dsr = get_object_or_404(DataSubjectRequest, pk=pk)
        back = HttpResponseRedirect(reverse("admin:consent_datasubjectrequest_change", args=[pk]))
        if request.method != "POST":
            return back
        if not request.user.has_perm("consent.process_datasubjectrequest"):
            self.message_user(request, "You may not process requests.", messages.ERROR)
            return back
        action = request.POST.get("action", "")
        note = request.POST.get("note", "")
        try:
            if action in ("erase", "resume"):
                with transaction.atomic():
                    if action == "erase":
                        erasure_start(request=dsr, actor=request.user)
                    else:
                        erasure_resume(request=dsr, actor=request.user)
                    request_id = str(dsr.pk)
                    transaction.on_commit(lambda: task_send(erasure_run_task, request_id))
                self.message_user(request, "Erasure started; this page shows its progress.")
            elif action == "rectify":
                import json

                try:
                    traits = json.loads(request.POST.get("traits") or "")
                except ValueError:
                    traits = None
                if not isinstance(traits, dict) or contains_nul(traits):
                    raise ApplicationError(
                        'Traits as a JSON object, e.g. {"lastName": "Lovelace"}, '
                        "without NUL characters."
                    )
                changed = dsr_rectify(request=dsr, traits=traits, actor=request.user)
                self.message_user(request, f"Corrected: {', '.join(changed) or 'nothing'}.")
            elif action == "object":
                keys = dsr_object(
                    request=dsr, purposes=request.POST.getlist("purposes"), actor=request.user
                )
                self.message_user(request, f"Objection recorded for: {', '.join(keys)}.")
            elif action == "extend":
                months = int(request.POST.get("months") or 0)
                dsr_extend(request=dsr, months=months, reason=note, actor=request.user)
                self.message_user(request, "The deadline was extended.")
            elif action in RequestStatus.values:
                dsr_transition(request=dsr, status=action, note=note, actor=request.user)
                self.message_user(
                    request, f"The request is now {RequestStatus(action).label.lower()}."
                )
            else:
                self.message_user(request, "Unknown action.", messages.ERROR)
        except (ApplicationError, ValueError, LookupError) as exc:
            self.message_user(request, getattr(exc, "message", str(exc)), messages.ERROR)
        return back

    def export_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        from rest_framework.exceptions import ValidationError

        from .api.views import export_response

        dsr = get_object_or_404(DataSubjectRequest, pk=pk)
        back = HttpResponseRedirect(reverse("admin:consent_datasubjectrequest_change", args=[pk]))
        if not request.user.has_perm("consent.export_datasubjectrequest"):
            self.message_user(request, "You may not download exports.", messages.ERROR)
            return back
        try:
            return export_response(dsr, request.user)
        except ValidationError as exc:
            self.message_user(request, str(exc.detail), messages.ERROR)
        except Exception as exc:  # Http404: nothing is held about the subject
            self.message_user(request, str(exc) or "Nothing to export.", messages.ERROR)
        return back


@admin.register(SuppressionEntry)
class SuppressionEntryAdmin(admin.ModelAdmin):
    list_display = ["identifier_type", "short_hash", "created_at", "request"]
    list_filter = ["identifier_type"]
    readonly_fields = ["identifier_type", "value_hash", "created_at", "request"]

    @admin.display(description="Hash")
    def short_hash(self, obj: SuppressionEntry) -> str:
        return obj.value_hash[:16] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
