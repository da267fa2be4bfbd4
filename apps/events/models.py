import secrets

from django.db import models

from apps.common.models import TimeStampedModel
from apps.common.utils import sha256_hex


def generate_write_key() -> str:
    return secrets.token_urlsafe(24)


def write_key_hash(raw: str) -> str:
    """The SHA-256 a write key is stored and looked up as (apps/events/auth.py)."""
    return sha256_hex(raw)


def write_key_prefix(raw: str) -> str:
    """The part of a key shown in admin to tell keys apart: 6 characters of a
    generated 32-character key, a quarter of a shorter one given by hand."""
    return raw[: min(6, len(raw) // 4)]


def unusable_write_key_hash() -> str:
    # A source made without a key gets the digest of one nobody was shown: it
    # takes no events until its key is rotated (admin action, rotate_write_key).
    return write_key_hash(secrets.token_urlsafe(32))


class Source(TimeStampedModel):
    """An app or website that sends events, identified by its write key.

    Write keys are embedded in web pages and mobile apps and can only write
    events, but a leaked one lets anyone write events as that source, so only a
    SHA-256 of the key is stored, as for API tokens: keys are 192-bit random
    values, so a fast hash is enough and the lookup stays one indexed query. The
    whole key is shown once, when it is made or rotated (apps/events/auth.py).
    """

    name = models.CharField(max_length=100, unique=True)
    write_key_prefix = models.CharField(max_length=12, blank=True, default="", editable=False)
    write_key_hash = models.CharField(
        max_length=64, unique=True, default=unusable_write_key_hash, editable=False
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_write_key(self, raw: str) -> None:
        """Store ``raw`` as this source's key (its digest and prefix; not saved)."""
        self.write_key_prefix = write_key_prefix(raw)
        self.write_key_hash = write_key_hash(raw)


class EventType(models.TextChoices):
    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


class Event(models.Model):
    """One accepted event, as the client sent it, with its corrected time."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique (source, message_id) index leads with it.
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="+", db_index=False)
    message_id = models.CharField(max_length=255)
    type = models.CharField(max_length=16, choices=EventType.choices)
    event = models.CharField(max_length=255, blank=True, default="")
    name = models.CharField(max_length=255, blank=True, default="")
    user_id = models.CharField(max_length=255, blank=True, default="")
    anonymous_id = models.CharField(max_length=255, blank=True, default="")
    previous_id = models.CharField(max_length=255, blank=True, default="")
    group_id = models.CharField(max_length=255, blank=True, default="")
    # Segment's four times: timestamp is corrected for the client's clock skew.
    timestamp = models.DateTimeField()
    original_timestamp = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    # A client time was implausible (apps/events/parsing.py, time_window), so the
    # event is timed without it; what was sent is kept in the two fields above.
    timestamp_corrected = models.BooleanField(default=False)
    properties = models.JSONField(default=dict, blank=True)
    traits = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    # Every other top-level key the client sent (integrations, channel, version...).
    extra = models.JSONField(default=dict, blank=True)
    # No index of its own: event_profile_ts_idx (profile, -timestamp) leads with it.
    # Every index costs each ingested row an insert.
    profile = models.ForeignKey(
        "identity.Profile",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "message_id"], name="event_source_message_id_uniq"
            )
        ]
        indexes = [
            models.Index(fields=["profile", "-timestamp"], name="event_profile_ts_idx"),
            models.Index(
                fields=["received_at"],
                name="event_pending_idx",
                condition=models.Q(processed_at__isnull=True),
            ),
            models.Index(fields=["timestamp"], name="event_timestamp_idx"),
            # Counting corrected times per source (admin) reads only these rows.
            models.Index(
                fields=["source"],
                name="event_time_corrected_idx",
                condition=models.Q(timestamp_corrected=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event or self.name} ({self.message_id})"


class RejectedEvent(models.Model):
    """An event (or a whole request) that was refused, with why and what was sent."""

    class Reason(models.TextChoices):
        INVALID_EVENT = "invalid_event", "Invalid event"
        TOO_LARGE = "too_large", "Too large"
        INVALID_JSON = "invalid_json", "Not JSON"
        INVALID_BODY = "invalid_body", "Invalid body"

    id = models.BigAutoField(primary_key=True)
    source = models.ForeignKey(
        Source, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    received_at = models.DateTimeField(db_index=True)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    message = models.TextField()
    path = models.CharField(max_length=100, blank=True, default="")
    message_id = models.CharField(max_length=255, blank=True, default="")
    event_type = models.CharField(max_length=32, blank=True, default="")
    # The raw payload (truncated): JSON when it parsed, else the text.
    payload = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.reason}: {self.message[:60]}"


class PipelineBatch(models.Model):
    """Processed events that pipeline stages still have to see (apps/events/pipeline.py).

    Made in the transaction that resolves the events; each stage that passes is
    added to ``done_stages`` in its own transaction; the row goes when every stage
    has passed. What is left shows failures: attempts, the stage and its error.
    """

    event_ids = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    done_stages = models.JSONField(default=list, blank=True)
    # Failures of the stage that fails now (0 again once it passes), and in all.
    attempts = models.PositiveIntegerField(default=0)
    failures_total = models.PositiveIntegerField(default=0)
    failing_stage = models.CharField(max_length=100, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Gave up after the last retry: shown in admin until retried from there.
    parked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "pipeline batches"
        indexes = [
            models.Index(
                fields=["created_at"],
                name="pipeline_due_idx",
                condition=models.Q(parked_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"batch {self.pk} ({len(self.event_ids)} events)"
