"""Destinations (where audiences and mappings go), their runs and files, and
webhook deliveries (the outbound queue, its retries and its dead letters)."""

from __future__ import annotations

from django.db import models


class DestinationKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (Standard Webhooks)"
    JSON_FEED = "json_feed", "JSON feed (pulled with a token)"
    ADOBE_TARGET = "adobe_target", "Adobe Target bulk profile update"
    OPTIMIZELY = "optimizely", "Optimizely list attributes"
    DYNAMIC_YIELD = "dynamic_yield", "Dynamic Yield CRM data"
    GOOGLE_CUSTOMER_MATCH = "google_customer_match", "Google Customer Match"
    META_CUSTOM_AUDIENCE = "meta_custom_audience", "Meta custom audience"


FILE_KINDS = frozenset(
    {
        DestinationKind.ADOBE_TARGET,
        DestinationKind.OPTIMIZELY,
        DestinationKind.DYNAMIC_YIELD,
        DestinationKind.GOOGLE_CUSTOMER_MATCH,
        DestinationKind.META_CUSTOM_AUDIENCE,
    }
)
# Ad platforms match on several hashed fields of their own choosing, not one id.
MATCH_KINDS = frozenset(
    {DestinationKind.GOOGLE_CUSTOMER_MATCH, DestinationKind.META_CUSTOM_AUDIENCE}
)


class IdentifierChoice(models.TextChoices):
    PROFILE_ID = "id", "Profile id"
    USER_ID = "user_id", "User id"
    ANONYMOUS_ID = "anonymous_id", "Anonymous id"
    EMAIL = "email", "Email"
    PHONE = "phone", "Phone"


class Hashing(models.TextChoices):
    NONE = "none", "None"
    SHA256 = "sha256", "SHA-256 (hex)"


class Destination(models.Model):
    """Where exports go: a kind, its settings (validated per kind, apps/exports/
    kinds.py), the consent purpose every exported person must allow, the
    identifier sent and its hashing, the segments sent, and a schedule."""

    key = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=30, choices=DestinationKind.choices)
    settings = models.JSONField(default=dict, blank=True)
    purpose = models.ForeignKey(
        "consent.Purpose",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Only profiles that allow this purpose are exported.",
    )
    identifier_type = models.CharField(
        max_length=20, choices=IdentifierChoice.choices, default=IdentifierChoice.USER_ID
    )
    hashing = models.CharField(max_length=10, choices=Hashing.choices, default=Hashing.NONE)
    segments = models.ManyToManyField("segments.Segment", related_name="+", blank=True)
    schedule = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text='Cron expression ("minute hour day month weekday"), empty: by hand only.',
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True, default="")
    # Webhooks: the whsec_ signing secret. It must be usable for signing, so it
    # cannot be hashed: it is stored encrypted (a Fernet token under
    # CDP_SECRETS_KEY, apps/common/crypto.py), never shown after creation, never
    # in a form or a log. Read it with apps.exports.webhooks.webhook_secret_of.
    webhook_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    # JSON feed: the hash of the pull token (the token is shown once).
    feed_token_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    feed_token_prefix = models.CharField(max_length=20, blank=True, default="", editable=False)
    # Webhooks: the outbox id up to which membership changes were pushed.
    outbox_cursor = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name or self.key


class RunStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RunMode(models.TextChoices):
    FULL = "full", "Full"
    INCREMENTAL = "incremental", "Incremental (outbox changes since the last run)"


class RunTrigger(models.TextChoices):
    MANUAL = "manual", "By hand"
    SCHEDULE = "schedule", "Schedule"


ACTIVE_RUN_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING)


class ExportRun(models.Model):
    """One export of a destination: what it read (the outbox range), what left
    and what did not (and why), how long it took, and its files."""

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.PENDING)
    mode = models.CharField(max_length=12, choices=RunMode.choices, default=RunMode.FULL)
    trigger = models.CharField(max_length=10, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    # Outbox ids: changes with outbox_from < id <= outbox_to are this run's.
    outbox_from = models.BigIntegerField(default=0)
    outbox_to = models.BigIntegerField(default=0)
    profiles = models.PositiveIntegerField(default=0)
    rows = models.PositiveIntegerField(default=0)
    files = models.PositiveIntegerField(default=0)
    skipped_consent = models.PositiveIntegerField(default=0)
    skipped_no_identifier = models.PositiveIntegerField(default=0)
    segments_exported = models.JSONField(default=list, blank=True)
    segments_skipped = models.JSONField(
        default=list, blank=True, help_text="Segments below their minimum size (or disabled)."
    )
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Two runs of one destination never overlap.
            models.UniqueConstraint(
                fields=["destination"],
                condition=models.Q(status__in=["pending", "running"]),
                name="export_run_one_active",
            )
        ]

    def __str__(self) -> str:
        return f"{self.destination_id} run {self.pk} ({self.status})"


class ExportFile(models.Model):
    """A file a run wrote, under the exports directory (downloaded from admin)."""

    run = models.ForeignKey(ExportRun, on_delete=models.CASCADE, related_name="export_files")
    name = models.CharField(max_length=200)
    path = models.CharField(max_length=500, help_text="Relative to the exports directory.")
    rows = models.PositiveIntegerField(default=0)
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    # When the file was deleted after CDP["EXPORT_FILE_RETENTION_DAYS"]; the row
    # stays (the run's record), the download answers 410 Gone.
    expired_at = models.DateTimeField(null=True, blank=True)
    # Why the last attempt to delete it failed (the date and the OSError's kind);
    # empty once deleted. Retried daily.
    expire_error = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["run", "name"]

    def __str__(self) -> str:
        return self.name


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    DEAD = "dead", "Dead letter"
    CANCELLED = "cancelled", "Cancelled (endpoint disabled)"


class WebhookDelivery(models.Model):
    """One webhook message and its attempts. The body is kept byte for byte, so
    that every retry sends (and signs) the same message under the same id."""

    destination = models.ForeignKey(
        Destination, on_delete=models.CASCADE, related_name="deliveries"
    )
    message_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=50)
    body = models.TextField()
    # The person the message is about (null for messages about nobody in
    # particular, and for erasure notices, whose profile is gone).
    profile_id = models.UUIDField(null=True, blank=True, db_index=True)
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="delivery_due_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.message_id} {self.event_type} ({self.status})"
