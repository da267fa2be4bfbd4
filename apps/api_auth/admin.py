from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from .models import ApiToken
from .selectors import token_cache_clear_on_commit
from .services import api_token_create


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "prefix",
        "user",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    fields = ("name", "user", "prefix", "expires_at", "revoked_at", "created_at", "last_used_at")
    autocomplete_fields = ("user",)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            # Revoked or re-dated here: at once in this process, and again at the
            # commit (admin saves in a transaction: selectors.py).
            token_cache_clear_on_commit(obj.key_hash)
            return
        token, raw = api_token_create(name=obj.name, user=obj.user)
        token.expires_at = obj.expires_at
        token.save(update_fields=["expires_at"])
        obj.pk = token.pk
        messages.warning(
            request,
            f"Token created. Copy it now, it is not stored and will not be shown again: {raw}",
        )

    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        super().delete_model(request, obj)
        token_cache_clear_on_commit(obj.key_hash)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        hashes = list(queryset.values_list("key_hash", flat=True))
        super().delete_queryset(request, queryset)
        for key_hash in hashes:
            token_cache_clear_on_commit(key_hash)
