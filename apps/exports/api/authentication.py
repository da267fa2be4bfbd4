from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from ..models import Destination, DestinationKind
from ..services import feed_token_hash


class FeedTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <feed token>`` of a JSON feed destination (the
    token is looked up by its hash; it is shown once when made)."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Destination] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected 'Bearer <feed token>'."
            )
        try:
            raw = header[1].decode()
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token characters.") from exc
        destination = Destination.objects.filter(
            kind=DestinationKind.JSON_FEED, feed_token_hash=feed_token_hash(raw)
        ).first()
        if destination is None:
            raise exceptions.AuthenticationFailed("Not the token of any JSON feed.")
        return AnonymousUser(), destination

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class IsEnabledFeed(permissions.BasePermission):
    message = "This feed is disabled."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, Destination):
            raise exceptions.NotAuthenticated("A feed token is needed (Authorization: Bearer).")
        return request.auth.enabled


class FeedTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.exports.api.authentication.FeedTokenAuthentication"
    name = "feedToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The token of a JSON feed destination (shown once in admin).",
        }
