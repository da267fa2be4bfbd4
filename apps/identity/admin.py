from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .models import (
    Identifier,
    IdentifierType,
    IdentifierTypeConfig,
    IdentityConflict,
    JunkIdentifierValue,
    Profile,
    ProfileMerge,
    ProfileSeparation,
    TraitMergeRule,
)
from .sections import profile_admin_context
from .services import MergeRefused, profile_merge, profile_split


def _profile_link(profile_id: Any) -> str:
    if profile_id is None:
        return "-"
    url = reverse("admin:identity_profile_change", args=[profile_id])
    return format_html('<a href="{}">{}</a>', url, str(profile_id)[:8])


def _pretty_json(value: Any) -> str:
    return format_html(
        '<pre style="margin:0;white-space:pre-wrap">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True),
    )


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class IdentifierInline(ReadOnlyInline):
    model = Identifier
    fields = ("type", "value", "raw_value", "created_at")
    readonly_fields = fields
    ordering = ("type", "id")


class MergesWonInline(ReadOnlyInline):
    model = ProfileMerge
    fk_name = "survivor"
    fields = ("absorbed_link", "reason", "why", "actor", "created_at", "undone_at", "split")
    readonly_fields = fields
    verbose_name = "profile merged into this one"
    verbose_name_plural = "Merge history: profiles merged into this one"

    @admin.display(description="absorbed profile")
    def absorbed_link(self, obj: ProfileMerge) -> str:
        return _profile_link(obj.absorbed_id)

    @admin.display(description="why")
    def why(self, obj: ProfileMerge) -> str:
        return merge_reason_text(obj)

    @admin.display(description="")
    def split(self, obj: ProfileMerge) -> str:
        if obj.undone_at is not None:
            return "split"
        url = reverse("admin:identity_profile_split", args=[obj.absorbed_id])
        return format_html('<a class="button" href="{}">Split out</a>', url)


class ConflictInline(ReadOnlyInline):
    model = IdentityConflict
    fk_name = "profile"
    fields = ("identifier_type", "identifier_value", "rule", "other_link", "event_id", "created_at")
    readonly_fields = fields
    verbose_name_plural = "Identity conflicts: identifiers not linked to this profile"

    @admin.display(description="other profile")
    def other_link(self, obj: IdentityConflict) -> str:
        return _profile_link(obj.other_profile_id)


def merge_reason_text(merge: ProfileMerge) -> str:
    details = merge.details or {}
    if merge.reason == ProfileMerge.Reason.SHARED_IDENTIFIER:
        ident = details.get("identifier") or ["?", "?"]
        anchor = details.get("anchor")
        text = f"event {details.get('event_id') or '-'} named {ident[0]} {ident[1]}"
        if anchor:
            text += f" together with {anchor[0]} {anchor[1]}"
        return text
    if merge.reason == ProfileMerge.Reason.MATCH_SCORE:
        return f"match score {details.get('score', '?')}"
    text = f"by {merge.actor or 'an admin'}"
    if details.get("note"):
        text += f": {details['note']}"
    if merge.forced:
        text += " (safety rules overridden)"
    return text


class LiveFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "Live"), ("merged", "Merged away")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "live":
            return queryset.filter(merged_into__isnull=True)
        if self.value() == "merged":
            return queryset.filter(merged_into__isnull=False)
        return queryset


def _cut(value: str, length: int) -> str:
    """``value`` cut to ``length`` characters, the whole of it in the title."""
    if len(value) <= length:
        return value
    return format_html('<span title="{}">{}</span>', value, value[: length - 1] + "…")


def _when(value: Any) -> str:
    """A time in a list column: 2026-03-14 15:09 rather than "March 14, 2026, 3:09 p.m."."""
    return "-" if value is None else f"{timezone.localtime(value):%Y-%m-%d %H:%M}"


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    # Fits a 1440-pixel window beside the filter (tests/events/test_admin_browser.py):
    # long names and emails are cut, their whole value in a title.
    list_display = ("short_id", "display_name", "email", "first_seen_at", "last_seen_at", "status")
    list_filter = (LiveFilter,)
    search_fields = ("=id", "=identifiers__value")
    search_help_text = "Exact profile id or identifier value (user id, email, phone...)."
    fields = (
        "id",
        "status",
        "traits_pretty",
        "first_seen",
        "last_seen",
        "events_link",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    inlines = [IdentifierInline, MergesWonInline, ConflictInline]
    show_full_result_count = False
    ordering = ("-last_seen",)
    actions = ["merge_selected", "force_merge_selected"]
    change_form_template = "admin/identity/profile/change_form.html"

    @admin.display(description="id")
    def short_id(self, obj: Profile) -> str:
        return str(obj.id)[:8]

    @admin.display(description="name")
    def display_name(self, obj: Profile) -> str:
        traits = obj.traits or {}
        name = traits.get("name") or " ".join(
            str(traits[k]) for k in ("firstName", "lastName") if traits.get(k)
        )
        return _cut(str(name), 32) if name else "(anonymous)"

    @admin.display(description="email")
    def email(self, obj: Profile) -> str:
        return _cut(str((obj.traits or {}).get("email", "")), 36)

    @admin.display(description="first seen", ordering="first_seen")
    def first_seen_at(self, obj: Profile) -> str:
        return _when(obj.first_seen)

    @admin.display(description="last seen", ordering="last_seen")
    def last_seen_at(self, obj: Profile) -> str:
        return _when(obj.last_seen)

    @admin.display(description="status")
    def status(self, obj: Profile) -> str:
        if obj.merged_into_id is None:
            return "live"
        return format_html("merged into {}", _profile_link(obj.merged_into_id))

    @admin.display(description="traits")
    def traits_pretty(self, obj: Profile) -> str:
        return _pretty_json(obj.traits)

    @admin.display(description="events")
    def events_link(self, obj: Profile) -> str:
        url = reverse("admin:events_event_changelist") + f"?profile__id__exact={obj.id}"
        return format_html('<a href="{}">Events of this profile</a>', url)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # People are removed by an erasure request, which also suppresses them;
        # a plain delete would orphan their events and let them be re-ingested.
        return False

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        # Everything on the page is read-only; changes are merges and splits. The
        # apps above identity add their parts (consent: its states and log).
        sections: dict[str, Any] = {}
        for section in profile_admin_context:
            sections.update(section(request, object_id))
        extra_context = {
            **(extra_context or {}),
            **sections,
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.has_perm("identity.force_merge_profile"):
            actions.pop("force_merge_selected", None)
        if not request.user.has_perm("identity.change_profile"):
            actions.pop("merge_selected", None)
        return actions

    def _merge(self, request: HttpRequest, queryset: QuerySet[Profile], force: bool) -> None:
        ids = list(queryset.values_list("id", flat=True)[:3])
        if len(ids) != 2:
            self.message_user(request, "Select exactly two profiles to merge.", messages.ERROR)
            return
        try:
            record = profile_merge(
                profile_ids=(ids[0], ids[1]),
                reason=ProfileMerge.Reason.ADMIN,
                details={"via": "admin"},
                actor=request.user,
                force=force,
            )
        except MergeRefused as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(
            request,
            format_html(
                "Merged {} into {}. It can be split again from the survivor's page.",
                _profile_link(record.absorbed_id),
                _profile_link(record.survivor_id),
            ),
            messages.SUCCESS,
        )

    @admin.action(description="Merge the two selected profiles", permissions=["change"])
    def merge_selected(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        self._merge(request, queryset, force=False)

    @admin.action(description="Force-merge the two selected profiles (overrides safety rules)")
    def force_merge_selected(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        if not request.user.has_perm("identity.force_merge_profile"):
            raise PermissionDenied
        self._merge(request, queryset, force=True)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<uuid:profile_id>/split/",
                self.admin_site.admin_view(self.split_view),
                name="identity_profile_split",
            ),
            *super().get_urls(),
        ]

    def split_view(self, request: HttpRequest, profile_id: Any) -> HttpResponse:
        if not request.user.has_perm("identity.change_profile"):
            raise PermissionDenied
        profile = get_object_or_404(Profile, pk=profile_id)
        merge = (
            ProfileMerge.objects.filter(absorbed=profile, undone_at__isnull=True)
            .order_by("-created_at")
            .first()
        )
        change_url = reverse("admin:identity_profile_change", args=[profile.pk])
        if merge is None:
            self.message_user(
                request, "This profile is not merged into another one.", messages.ERROR
            )
            return HttpResponseRedirect(change_url)
        if request.method == "POST":
            try:
                profile_split(
                    profile_id=profile.pk,
                    actor=request.user,
                    note=str(request.POST.get("note", ""))[:500],
                )
            except MergeRefused as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, "Split: the profile is live again.", messages.SUCCESS)
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Split a merged profile",
            "profile": profile,
            "merge": merge,
            "why": merge_reason_text(merge),
            "identifiers": merge.absorbed_snapshot.get("identifiers", []),
            "traits": merge.absorbed_snapshot.get("traits", {}),
            "survivor_link": _profile_link(merge.survivor_id),
        }
        return TemplateResponse(request, "admin/identity/profile/split_confirm.html", context)


@admin.register(ProfileMerge)
class ProfileMergeAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "survivor_link",
        "absorbed_link",
        "reason",
        "why",
        "forced",
        "undone_at",
    )
    list_filter = ("reason", "forced", ("undone_at", admin.EmptyFieldListFilter))
    fields = (
        "survivor_link",
        "absorbed_link",
        "reason",
        "why",
        "details_pretty",
        "forced",
        "actor",
        "created_at",
        "undone_at",
        "undone_by",
    )
    readonly_fields = fields
    date_hierarchy = "created_at"

    @admin.display(description="survivor")
    def survivor_link(self, obj: ProfileMerge) -> str:
        return _profile_link(obj.survivor_id)

    @admin.display(description="absorbed")
    def absorbed_link(self, obj: ProfileMerge) -> str:
        return _profile_link(obj.absorbed_id)

    @admin.display(description="why")
    def why(self, obj: ProfileMerge) -> str:
        return merge_reason_text(obj)

    @admin.display(description="details")
    def details_pretty(self, obj: ProfileMerge) -> str:
        return _pretty_json(obj.details)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(IdentityConflict)
class IdentityConflictAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "profile_link",
        "identifier_type",
        "identifier_value",
        "rule",
        "other",
    )
    list_filter = ("rule", "identifier_type")
    search_fields = ("=identifier_value",)
    readonly_fields = (
        "profile",
        "identifier_type",
        "identifier_value",
        "rule",
        "other_profile",
        "event_id",
        "created_at",
    )

    @admin.display(description="profile")
    def profile_link(self, obj: IdentityConflict) -> str:
        return _profile_link(obj.profile_id)

    @admin.display(description="other profile")
    def other(self, obj: IdentityConflict) -> str:
        return _profile_link(obj.other_profile_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# user_id is the strongest identifier and one per profile whatever its row says
# (rules.IdentityRules pins both): its row does not pretend otherwise.
_PINNED = {IdentifierType.USER_ID.value: ("priority", "max_per_profile")}


class IdentifierTypeConfigListForm(forms.ModelForm):
    """A changelist row: the user_id row's pinned columns are shown, not editable."""

    class Meta:
        model = IdentifierTypeConfig
        fields = ("priority", "max_per_profile", "enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in _PINNED.get(self.instance.key, ()):
            if name in self.fields:
                self.fields[name].disabled = True


@admin.register(ProfileSeparation)
class ProfileSeparationAdmin(admin.ModelAdmin):
    """Profiles an admin split apart. Read-only: a forced merge ends one."""

    list_display = (
        "created_at",
        "profile_a_link",
        "profile_b_link",
        "note",
        "created_by",
        "ended_at",
        "ended_by",
    )
    list_filter = (("ended_at", admin.EmptyFieldListFilter),)
    search_fields = ("=profile_a__id", "=profile_b__id")
    fields = (
        "profile_a_link",
        "profile_b_link",
        "split_merge",
        "note",
        "created_by",
        "created_at",
        "ended_at",
        "ended_by",
        "ended_by_merge",
    )
    readonly_fields = fields

    @admin.display(description="profile")
    def profile_a_link(self, obj: ProfileSeparation) -> str:
        return _profile_link(obj.profile_a_id)

    @admin.display(description="kept apart from")
    def profile_b_link(self, obj: ProfileSeparation) -> str:
        return _profile_link(obj.profile_b_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(IdentifierTypeConfig)
class IdentifierTypeConfigAdmin(admin.ModelAdmin):
    list_display = (
        "key",
        "label",
        "priority",
        "max_per_profile",
        "normalization",
        "trait",
        "enabled",
    )
    list_editable = ("priority", "max_per_profile", "enabled")
    list_filter = ("enabled", "normalization")

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> Any:
        kwargs.setdefault("form", IdentifierTypeConfigListForm)
        return super().get_changelist_form(request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        fixed = list(_PINNED.get(obj.key, ()))
        in_use = Identifier.objects.filter(type=obj.key).exists()
        # Renaming a type orphans its identifiers, and a new normalization would
        # give a returning value another form: both would silently split people
        # who are stitched today. Built-in types are what the tracking spec names.
        if in_use or obj.key in IdentifierType.values:
            fixed.append("key")
        if in_use:
            fixed.append("normalization")
        return fixed


@admin.register(JunkIdentifierValue)
class JunkIdentifierValueAdmin(admin.ModelAdmin):
    list_display = ("value", "note", "created_at")
    search_fields = ("value",)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        from .normalize import JUNK_VALUES

        builtin = format_html_join(
            ", ", "<code>{}</code>", ((v or "(blank)",) for v in sorted(JUNK_VALUES))
        )
        self.message_user(
            request,
            format_html(
                "Always junk, in addition to these: {} and values made only of 0 and -.", builtin
            ),
            messages.INFO,
        )
        return super().get_changelist_instance(request)


@admin.register(TraitMergeRule)
class TraitMergeRuleAdmin(admin.ModelAdmin):
    list_display = ("trait", "strategy")
    list_editable = ("strategy",)


from .dedup import admin as dedup_admin  # noqa: E402,F401  (registers the dedup admin)
