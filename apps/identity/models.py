import uuid

from django.conf import settings
from django.db import models

from apps.common.models import TimeStampedModel


class IdentifierType(models.TextChoices):
    USER_ID = "user_id", "User id"
    ANONYMOUS_ID = "anonymous_id", "Anonymous id"
    EMAIL = "email", "Email"
    PHONE = "phone", "Phone"


class ProfileQuerySet(models.QuerySet["Profile"]):
    def live(self) -> "ProfileQuerySet":
        """Profiles that have not been merged into another one."""
        return self.filter(merged_into__isnull=True)


class Profile(TimeStampedModel):
    """One person. Absorbed profiles stay (pointing at their survivor) so that a
    merge can be explained and split again."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    traits = models.JSONField(default=dict, blank=True)
    # Event time of each trait's current value: a late, older event never
    # overwrites a newer value.
    trait_timestamps = models.JSONField(default=dict, blank=True, editable=False)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True, db_index=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="absorbed"
    )

    objects = ProfileQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def is_live(self) -> bool:
        return self.merged_into_id is None


class Identifier(models.Model):
    """A (type, normalized value) pair; it belongs to exactly one profile."""

    id = models.BigAutoField(primary_key=True)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="identifiers")
    type = models.CharField(max_length=50)
    value = models.CharField(max_length=255)
    raw_value = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["type", "value"], name="identifier_type_value_uniq")
        ]
        indexes = [models.Index(fields=["profile", "type"], name="identifier_profile_type_idx")]

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


class ProfileMerge(models.Model):
    """Audit of one merge, with what is needed to undo it."""

    class Reason(models.TextChoices):
        SHARED_IDENTIFIER = "shared_identifier", "Shared identifier"
        MATCH_SCORE = "match_score", "Probabilistic match"
        ADMIN = "admin", "Admin"

    survivor = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges_won")
    absorbed = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges_lost")
    reason = models.CharField(max_length=30, choices=Reason.choices)
    # Why: {"identifier": [type, value], "anchor": [...], "event_id": 123} for a
    # shared identifier; {"score": ..., "evidence": {...}} for a match; the admin's note.
    details = models.JSONField(default=dict, blank=True)
    # Both profiles as they were just before: traits, trait timestamps, first and
    # last seen, and (absorbed) the identifiers it brought. A split restores them.
    absorbed_snapshot = models.JSONField(default=dict, blank=True)
    survivor_snapshot = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The admin who merged (empty for automatic merges).",
    )
    forced = models.BooleanField(default=False, help_text="Safety rules were overridden.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        permissions = [("force_merge_profile", "Can merge profiles against the safety rules")]

    def __str__(self) -> str:
        return f"{self.absorbed_id} -> {self.survivor_id}"


class IdentityConflict(models.Model):
    """An identifier that was not linked because linking would break a rule."""

    class Rule(models.TextChoices):
        ONE_USER_ID = "one_user_id", "At most one user id per profile"
        DIFFERENT_USER_IDS = "different_user_ids", "Profiles with different user ids"
        CAP = "cap", "Too many identifiers of this type"
        SPLIT_BY_ADMIN = "split_by_admin", "Profiles an admin split apart"

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="conflicts")
    identifier_type = models.CharField(max_length=50)
    identifier_value = models.CharField(max_length=255)
    rule = models.CharField(max_length=30, choices=Rule.choices)
    other_profile = models.ForeignKey(
        Profile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    event_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.identifier_type} conflict on {self.profile_id}"


class ProfileSeparationQuerySet(models.QuerySet["ProfileSeparation"]):
    def active(self) -> "ProfileSeparationQuerySet":
        """Separations still in force (not ended by a forced merge)."""
        return self.filter(ended_at__isnull=True)


class ProfileSeparation(models.Model):
    """Two profiles an admin split apart, to be kept apart.

    Nothing merges them again automatically, nor the live profiles that later
    absorb either of them: an event naming both drops its weaker identifier and
    records a conflict, and a merge without force is refused. An admin's forced
    merge may still join them, and ends the separation."""

    profile_a = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+")
    profile_b = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+")
    split_merge = models.ForeignKey(
        ProfileMerge,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The merge whose split separated them.",
    )
    note = models.CharField(max_length=500, blank=True, help_text="Why, in the admin's words.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ended_by_merge = models.ForeignKey(
        ProfileMerge,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The forced merge that joined them anyway.",
    )

    objects = ProfileSeparationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(profile_a__lt=models.F("profile_b")),
                name="profile_separation_a_lt_b",
            ),
            models.UniqueConstraint(
                fields=["profile_a", "profile_b"],
                condition=models.Q(ended_at__isnull=True),
                name="profile_separation_active_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile_a_id} / {self.profile_b_id}"


class Normalization(models.TextChoices):
    EXACT = "exact", "Exact (trimmed)"
    LOWERCASE = "lowercase", "Case-insensitive"
    EMAIL = "email", "Email address"
    PHONE = "phone", "Phone number (E.164)"


class IdentifierTypeConfig(models.Model):
    """How one identifier type is read, normalized and limited.

    The four built-in types are rows too (created by a migration), so their limits
    can be tuned; admins add custom types such as ``crm_id`` or ``device_id``.
    """

    key = models.SlugField(max_length=50, unique=True, help_text="e.g. crm_id")
    label = models.CharField(max_length=100)
    priority = models.PositiveSmallIntegerField(
        default=50,
        help_text="Lower is stronger. When an event's identifiers cannot all be linked, "
        "the weakest are dropped.",
    )
    max_per_profile = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most identifiers of this type one profile may hold (empty: no limit). "
        "A link or merge that would exceed it does not happen.",
    )
    normalization = models.CharField(
        max_length=20, choices=Normalization.choices, default=Normalization.EXACT
    )
    trait = models.CharField(
        max_length=100,
        blank=True,
        help_text="Trait that carries this identifier (e.g. email). Events may also send "
        "it in context.externalIds with this type.",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["priority", "key"]
        verbose_name = "identifier type"

    def __str__(self) -> str:
        return self.key


class JunkIdentifierValue(models.Model):
    """A value that is never an identifier, in addition to the built-in list.

    Compared case-insensitively, after trimming."""

    value = models.CharField(max_length=255, unique=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["value"]
        verbose_name = "junk identifier value"

    def __str__(self) -> str:
        return self.value


class TraitStrategy(models.TextChoices):
    NEWEST = "newest", "Newest value by event time"
    FIRST_SEEN = "first_seen", "First value seen (earliest event time)"


class TraitMergeRule(models.Model):
    """How one trait is chosen when events or merged profiles disagree.

    Traits without a rule keep the newest value by event time."""

    trait = models.CharField(max_length=100, unique=True)
    strategy = models.CharField(max_length=20, choices=TraitStrategy.choices)

    class Meta:
        ordering = ["trait"]

    def __str__(self) -> str:
        return f"{self.trait}: {self.strategy}"


from .dedup.models import *  # noqa: E402,F403  (models of the dedup package)
