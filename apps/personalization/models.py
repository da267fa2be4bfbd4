"""Content mapping: placements, their content variants, and the rules that map a
segment to a variant; the exposures decisions record; the per-profile holdout
key; publishable keys for browsers; and the mapping's version counter.

Other apps (exports: the JSON feed, mapping-change webhooks) read Placement,
ContentVariant and Rule; ``MappingVersion.version`` goes up by one with every
saved or deleted placement, variant or rule (apps/personalization/mapping.py).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models

from .payload import payload_errors


class Placement(models.Model):
    """A place on a site or app where content is decided, e.g. ``home_hero``."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    # Shown when no rule applies (null only until the first variant exists).
    default_variant = models.ForeignKey(
        "personalization.ContentVariant",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name or self.key

    def clean(self) -> None:
        if (
            self.default_variant_id is not None
            and self.pk is not None
            and self.default_variant is not None
            and self.default_variant.placement_id != self.pk
        ):
            raise ValidationError(
                {"default_variant": "The default variant must belong to this placement."}
            )


class ContentVariant(models.Model):
    """One piece of content for a placement (apps/personalization/payload.py)."""

    key = models.SlugField(max_length=100, unique=True)
    placement = models.ForeignKey(Placement, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=200)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["placement__key", "key"]
        verbose_name = "content variant"

    def __str__(self) -> str:
        return self.name or self.key

    def clean(self) -> None:
        errors = payload_errors(self.payload)
        if errors:
            raise ValidationError(
                {"payload": [f"{k}: {v}" if k else v for k, v in sorted(errors.items())]}
            )


class Rule(models.Model):
    """Members of ``segment`` see ``variant`` in ``placement`` while the rule is
    enabled and inside its date window; the highest priority wins, ties go to the
    lowest id. ``holdout_percent`` of the segment (by a hash of the rule and the
    profile's holdout key) see the default instead, to measure lift."""

    placement = models.ForeignKey(Placement, on_delete=models.CASCADE, related_name="rules")
    # PROTECT: deleting a segment that content is mapped to is refused (the API's
    # 409 names the rules), rather than dropping the mapping without a word.
    segment = models.ForeignKey("segments.Segment", on_delete=models.PROTECT, related_name="+")
    variant = models.ForeignKey(ContentVariant, on_delete=models.PROTECT, related_name="rules")
    priority = models.IntegerField(default=0, help_text="Higher wins.")
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    holdout_percent = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(100)]
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["placement__key", "-priority", "id"]
        indexes = [models.Index(fields=["segment"], name="perso_rule_segment_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(holdout_percent__lte=100), name="perso_rule_holdout_pct"
            ),
            models.CheckConstraint(
                condition=models.Q(starts_at__isnull=True)
                | models.Q(ends_at__isnull=True)
                | models.Q(ends_at__gt=models.F("starts_at")),
                name="perso_rule_window",
            ),
        ]

    def __str__(self) -> str:
        return f"rule {self.pk}: {self.segment_id} -> {self.variant_id}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if (
            self.variant_id is not None
            and self.placement_id is not None
            and self.variant.placement_id != self.placement_id
        ):
            errors["variant"] = "The variant must belong to the rule's placement."
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "Must be after starts_at."
        if errors:
            raise ValidationError(errors)


class Exposure(models.Model):
    """One decision shown to a known profile: what lift is measured from.

    Written in bulk from a per-process buffer (apps/personalization/exposures.py).
    ``holdout`` means the profile matched ``rule`` but was held out (saw the
    default); ``rule`` is null for a fallback."""

    id = models.BigAutoField(primary_key=True)
    profile = models.ForeignKey(
        "identity.Profile", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    placement = models.ForeignKey(Placement, on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey(
        ContentVariant, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    rule = models.ForeignKey(Rule, on_delete=models.SET_NULL, null=True, related_name="+")
    holdout = models.BooleanField(default=False)
    at = models.DateTimeField()
    # The profile the decision was for, once the row has moved to another one (a
    # merge since: the merge hook, or the flush following it); null while it is
    # that profile's own. A split gives the rows made for the split-out profile,
    # or for those it had absorbed, back by it (registrations.py). No index: the
    # split reads it among the rows of one live profile (perso_exposure_profile_idx).
    origin_profile_id = models.UUIDField(null=True, blank=True, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["rule", "at"], name="perso_exposure_rule_idx"),
            models.Index(fields=["profile", "at"], name="perso_exposure_profile_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} saw {self.variant_id} at {self.placement_id}"


class HoldoutKey(models.Model):
    """The key a profile's holdout buckets hash: its own id until a merge, when
    the survivor's key is written here and kept (apps/personalization/holdouts.py)."""

    profile = models.OneToOneField(
        "identity.Profile", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    key = models.CharField(max_length=100)

    def __str__(self) -> str:
        return f"holdout key of {self.profile_id}"


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def origins_validate(value: Any) -> None:
    """A list of origins as browsers send them: scheme://host[:port], no path."""
    if not isinstance(value, list) or not all(
        isinstance(o, str) and _ORIGIN.fullmatch(o.rstrip("/")) for o in value
    ):
        raise ValidationError(
            'A list of origins such as ["https://shop.example.com"] (scheme, host and '
            "port, no path)."
        )


class PublishableKey(models.Model):
    """A key a browser may hold: it may only call decide, for the caller's own
    anonymous or user id, from its allowed origins (CORS). Stored as a SHA-256,
    like API tokens (apps/api_auth/models.py)."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        validators=[origins_validate],
        help_text='Origins browsers may call decide from, e.g. ["https://shop.example.com"].',
    )
    # The identity secret is derived from this and the server's key, never
    # stored (keys.py): a database dump does not let anyone forge user hashes.
    identity_salt = models.CharField(max_length=64, blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class MappingVersion(models.Model):
    """One row: bumped on every change to placements, variants and rules, so that
    every process's cached mapping notices (apps/personalization/mapping.py)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"mapping version {self.version}"
