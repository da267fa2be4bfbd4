"""What apps above identity add to a profile's pages: its API detail and its
admin page. Identity shows a person; consent, segments and features are other
apps' (DESIGN.md), so they register here in their ``AppConfig.ready()``.

**profile_api_fields**: ``name -> factory()`` returning a read-only DRF field
(``source="*"``: it gets the profile) added to ``GET /api/v1/profiles/<external_id>``
under ``name``, in the registry's order, after identity's own fields. The field
class carries its OpenAPI schema (``extend_schema_field``).

**profile_admin_context**: ``fn(request, profile_id) -> dict``, merged into the
context of the profile's admin page (``templates/admin/identity/profile/``);
``fn`` checks the viewer's permissions itself and returns ``{}`` when they may
not see its part.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from rest_framework import serializers

from apps.common.registry import Registry

profile_api_fields: Registry[Callable[[], serializers.Field[Any, Any, Any, Any]]] = Registry(
    "identity.profile_api_fields"
)
profile_admin_context: Registry[Callable[[HttpRequest, str], dict[str, Any]]] = Registry(
    "identity.profile_admin_context"
)
