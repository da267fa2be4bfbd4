from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Identifier, IdentityConflict, Profile, ProfileMerge


class IdentifierInline(admin.TabularInline):
    model = Identifier
    fields = ("type", "value", "raw_value", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MergeInline(admin.TabularInline):
    model = ProfileMerge
    fk_name = "survivor"
    fields = ("absorbed", "reason", "details", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "Profiles merged into this one"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ConflictInline(admin.TabularInline):
    model = IdentityConflict
    fk_name = "profile"
    fields = (
        "identifier_type",
        "identifier_value",
        "rule",
        "other_profile",
        "event_id",
        "created_at",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("id", "display_name", "first_seen", "last_seen", "merged_into")
    list_filter = (LiveFilter,)
    search_fields = ("=id", "=identifiers__value")
    readonly_fields = (
        "id",
        "traits",
        "first_seen",
        "last_seen",
        "merged_into",
        "created_at",
        "updated_at",
    )
    inlines = [IdentifierInline, MergeInline, ConflictInline]
    show_full_result_count = False
    ordering = ("-last_seen",)

    @admin.display(description="name")
    def display_name(self, obj: Profile) -> str:
        traits = obj.traits or {}
        name = traits.get("name") or " ".join(
            str(traits[k]) for k in ("firstName", "lastName") if traits.get(k)
        )
        return name or traits.get("email") or "(anonymous)"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(IdentityConflict)
class IdentityConflictAdmin(admin.ModelAdmin):
    list_display = ("created_at", "profile", "identifier_type", "rule", "other_profile", "event_id")
    list_filter = ("rule", "identifier_type")
    readonly_fields = (
        "profile",
        "identifier_type",
        "identifier_value",
        "rule",
        "other_profile",
        "event_id",
        "created_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
