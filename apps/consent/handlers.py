"""What consent adds to identity's layer: what profile lifecycle hooks
(apps/identity/hooks.py) do to consent records, and the consent parts of a
profile's API detail and admin page (apps/identity/sections.py).

Both logs of a merge are kept: the absorbed profile's joins its survivor's, and
the survivor's state is the latest statement of either. A split gives back the
statements made for the split-out profile (or for profiles it had absorbed)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from apps.identity.hooks import ProfilesMerged, ProfileSplit, merged, split
from apps.identity.sections import profile_admin_context, profile_api_fields

from .selectors import consent_log_for_profile, consent_states_for_profile
from .services.consent import consent_reassign_profiles, consent_restore_after_split


@merged.register("consent", order=20)
def consent_follow_merge(event: ProfilesMerged) -> None:
    consent_reassign_profiles(mapping=dict(event.mapping))


@split.register("consent", order=20)
def consent_follow_split(event: ProfileSplit) -> None:
    consent_restore_after_split(
        split_profile_id=event.profile_id,
        origin_profile_ids=event.tree_ids,
        from_profile_id=event.from_profile_id,
    )


# --- A profile's pages (apps/identity/sections.py) ---------------------------------


@extend_schema_field(
    serializers.DictField(
        child=inline_serializer(
            name="ProfileConsent",
            fields={"status": serializers.CharField(), "allowed": serializers.BooleanField()},
        )
    )
)
class ProfileConsentsField(serializers.Field):  # type: ignore[type-arg]
    """Purpose key -> {status, allowed}: may the profile's data be used for it now."""

    def __init__(self) -> None:
        super().__init__(source="*", read_only=True)

    def to_representation(self, profile: Any) -> dict[str, Any]:
        return {
            s.purpose.key: {"status": s.status, "allowed": s.allowed}
            for s in consent_states_for_profile(profile)
        }


profile_api_fields.register("consents", ProfileConsentsField, order=10)


@profile_admin_context.register("consent", order=10)
def consent_admin_context(request: HttpRequest, profile_id: str) -> dict[str, Any]:
    if not request.user.has_perm("consent.view_consentrecord"):
        return {}
    return {
        "consent_states": consent_states_for_profile(profile_id),
        "consent_log": list(consent_log_for_profile(profile_id)[:200]),
        "can_record_consent": request.user.has_perm("consent.add_consentrecord"),
        "can_request_erasure": request.user.has_perm("consent.add_datasubjectrequest"),
    }
