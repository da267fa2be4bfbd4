"""Admin: placements (with the marketers' content mapping page), variants with a
preview, rules (ties flagged), exposures (read-only) and publishable keys."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import path
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.common.utils import sha256_hex

from .admin_views import mapping_view, rule_ties, variant_preview
from .keys import (
    PUBLISHABLE_PREFIX,
    identity_salt_new,
    identity_secret,
    identity_secret_rotate,
    origins_cache_clear,
)
from .models import ContentVariant, Exposure, Placement, PublishableKey, Rule


class VariantInline(admin.TabularInline):  # type: ignore[type-arg]
    model = ContentVariant
    fields = ("key", "name", "payload")
    extra = 0
    show_change_link = True


@admin.register(Placement)
class PlacementAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("key", "name", "default_variant", "updated_at")
    search_fields = ("key", "name")
    inlines = [VariantInline]

    def get_urls(self) -> list[Any]:
        return [
            path(
                "mapping/",
                self.admin_site.admin_view(mapping_view),
                name="personalization_placement_mapping",
            ),
            *super().get_urls(),
        ]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "default_variant":
            obj_id = (
                request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
            )
            kwargs["queryset"] = ContentVariant.objects.filter(placement_id=obj_id or 0)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(ContentVariant)
class ContentVariantAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("key", "name", "placement", "updated_at")
    list_filter = ("placement",)
    search_fields = ("key", "name")
    readonly_fields = ("preview",)
    fields = ("placement", "key", "name", "payload", "preview")

    @admin.display(description="Preview")
    def preview(self, obj: ContentVariant) -> SafeString:
        return variant_preview(obj.payload)


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "id",
        "placement",
        "segment",
        "variant",
        "priority",
        "starts_at",
        "ends_at",
        "holdout_percent",
        "enabled",
        "tie",
    )
    list_filter = ("placement", "enabled")
    list_select_related = ("placement", "segment", "variant")

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        self._ties = rule_ties(list(Rule.objects.all()))
        return super().changelist_view(request, extra_context)

    @admin.display(description="Ties with")
    def tie(self, obj: Rule) -> str:
        others = getattr(self, "_ties", {}).get(obj.id, [])
        return (
            format_html('<span style="color:#b35900">{}</span>', ", ".join(map(str, others)))
            if others
            else ""
        )


@admin.register(Exposure)
class ExposureAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "profile_id", "placement", "variant", "rule", "holdout", "at")
    list_filter = ("holdout", "placement")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PublishableKey)
class PublishableKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "prefix", "allowed_origins", "created_at", "revoked_at")
    fields = ("name", "allowed_origins", "revoked_at")
    actions = ["rotate_identity_secret"]

    def save_model(
        self, request: HttpRequest, obj: PublishableKey, form: Any, change: bool
    ) -> None:
        obj.allowed_origins = [str(o).rstrip("/") for o in obj.allowed_origins or []]
        if change:
            super().save_model(request, obj, form, change)
            origins_cache_clear()  # revoked or new origins: at once here (keys.py)
            return
        raw = PUBLISHABLE_PREFIX + secrets.token_urlsafe(32)
        obj.prefix = raw[: len(PUBLISHABLE_PREFIX) + 6]
        obj.key_hash = sha256_hex(raw)
        obj.identity_salt = identity_salt_new()
        super().save_model(request, obj, form, change)
        # On the page once, never in a log: messages are not logged.
        messages.warning(
            request,
            f"The key (shown once, copy it now): {raw}. Its identity secret, for your "
            f"backend's user_hash (shown once, keep it server-side): {identity_secret(obj)}",
        )

    @admin.action(
        description="Rotate the identity secret (shows the new one once)",
        permissions=["change"],
    )
    def rotate_identity_secret(self, request: HttpRequest, queryset: Any) -> None:
        for key in queryset:
            secret = identity_secret_rotate(key=key)
            messages.warning(
                request,
                f"New identity secret of {key} (shown once; the old one stops "
                f"verifying user hashes): {secret}",
            )
