import uuid

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
        ADMIN = "admin", "Admin"

    survivor = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges_won")
    absorbed = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges_lost")
    reason = models.CharField(max_length=30, choices=Reason.choices)
    # e.g. {"identifier": ["user_id", "42"], "event_id": 123}
    details = models.JSONField(default=dict, blank=True)
    # The absorbed profile as it was: traits, trait timestamps, identifier ids.
    absorbed_snapshot = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.absorbed_id} -> {self.survivor_id}"


class IdentityConflict(models.Model):
    """An identifier that was not linked because linking would break a rule."""

    class Rule(models.TextChoices):
        ONE_USER_ID = "one_user_id", "At most one user id per profile"
        DIFFERENT_USER_IDS = "different_user_ids", "Profiles with different user ids"

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
