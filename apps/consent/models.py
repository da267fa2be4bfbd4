"""Consent purposes, the append-only consent log, data-subject requests and
suppression entries.

The consent log is the record: current state (``ConsentState``) is derived from
it and can be rebuilt from it at any time. On PostgreSQL a trigger refuses UPDATE
and DELETE on the log (migration 0002), except re-parenting a record when its
profile merges or splits, and except inside the erasure path.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from simple_history.models import HistoricalRecords

from apps.common.models import TimeStampedModel


class LegalBasis(models.TextChoices):
    CONSENT = "consent", "Consent (Art. 6(1)(a))"
    CONTRACT = "contract", "Contract (Art. 6(1)(b))"
    LEGITIMATE_INTEREST = "legitimate_interest", "Legitimate interest (Art. 6(1)(f))"


class StoragePolicy(models.TextChoices):
    DROP = "drop", "Drop the event"
    ANONYMIZE = "anonymize", "Store it without personal data"


class Purpose(TimeStampedModel):
    """Why personal data is used; what a person grants, denies or withdraws."""

    key = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    legal_basis = models.CharField(
        max_length=30, choices=LegalBasis.choices, default=LegalBasis.CONSENT
    )
    required = models.BooleanField(
        default=False,
        help_text="Needed to provide the service: cannot be denied (e.g. contract).",
    )
    default_granted = models.BooleanField(
        default=False,
        help_text="State of a person who has not said anything yet. Leave off for "
        "consent-based purposes (opt-in).",
    )
    expiry_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="A grant lapses this many days after it was given (empty: never).",
    )
    notice_version = models.CharField(max_length=50, blank=True)
    notice_text = models.TextField(
        blank=True, help_text="The text people agree to; each record keeps its hash."
    )
    # What the purpose gates.
    gates_storage = models.BooleanField(
        default=False, help_text="Storing behavioural events needs this purpose."
    )
    storage_policy = models.CharField(
        max_length=20,
        choices=StoragePolicy.choices,
        default=StoragePolicy.DROP,
        help_text="What happens to the events of a person who has not got this purpose.",
    )
    anonymized_properties = models.JSONField(
        default=list,
        blank=True,
        help_text="With the anonymize policy: the event properties kept, e.g. "
        '["product_id", "price"]. Empty: every property except those that name '
        "personal data (email, phone, name, address, ip...). Either way URL query "
        "strings are cut and values that look like email addresses are dropped.",
    )
    gates_personalization = models.BooleanField(
        default=False, help_text="Personalization decisions need this purpose."
    )
    gated_destinations = models.JSONField(
        default=list,
        blank=True,
        help_text='Keys of the export destinations this purpose gates, e.g. ["optimizely"].',
    )
    gpc_opt_out = models.BooleanField(
        default=False,
        help_text="A request with the Sec-GPC: 1 header opts out of this purpose "
        "(sale or sharing of personal data).",
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.required and self.legal_basis == LegalBasis.CONSENT:
            raise ValidationError(
                {
                    "required": "A purpose based on consent cannot be required: consent "
                    "must be freely given. Use contract or legitimate interest."
                }
            )
        if not isinstance(self.gated_destinations, list) or not all(
            isinstance(d, str) and d for d in self.gated_destinations
        ):
            raise ValidationError({"gated_destinations": "A list of destination keys."})
        if not isinstance(self.anonymized_properties, list) or not all(
            isinstance(p, str) and p.strip() for p in self.anonymized_properties
        ):
            raise ValidationError({"anonymized_properties": "A list of property names."})

    @property
    def notice_hash(self) -> str:
        return hashlib.sha256(self.notice_text.encode()).hexdigest() if self.notice_text else ""


class CategoryMapping(models.Model):
    """A consent category as a consent manager names it (Segment's
    ``categoryPreferences`` keys, e.g. "Advertising" or OneTrust's "C0004")."""

    category = models.CharField(max_length=100, unique=True)
    purpose = models.ForeignKey(Purpose, on_delete=models.CASCADE, related_name="categories")

    history = HistoricalRecords()

    class Meta:
        ordering = ["category"]

    def __str__(self) -> str:
        return f"{self.category} -> {self.purpose.key}"


class ConsentStatus(models.TextChoices):
    GRANTED = "granted", "Granted"
    DENIED = "denied", "Denied"
    WITHDRAWN = "withdrawn", "Withdrawn"


class ConsentSource(models.TextChoices):
    API = "api", "Management API"
    EVENT = "event", "SDK event"
    ADMIN = "admin", "Admin"
    IMPORT = "import", "Import"
    GPC = "gpc", "Global Privacy Control header"


class ConsentRecord(models.Model):
    """One statement of consent, as it was made. Never changed, never deleted
    (except by erasure)."""

    id = models.BigAutoField(primary_key=True)
    profile = models.ForeignKey(
        "identity.Profile", on_delete=models.PROTECT, related_name="consent_records"
    )
    # The profile the statement was made for: when profiles merge the record
    # follows the survivor, and a split sends it back here.
    origin_profile_id = models.UUIDField(editable=False)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="records")
    status = models.CharField(max_length=10, choices=ConsentStatus.choices)
    given_at = models.DateTimeField(help_text="When the person made the statement.")
    recorded_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=10, choices=ConsentSource.choices)
    method = models.CharField(
        max_length=100, blank=True, help_text='How: "cookie banner", "signup checkbox"...'
    )
    notice_version = models.CharField(max_length=50, blank=True)
    notice_hash = models.CharField(max_length=64, blank=True)
    # Proof. The IP address is kept only as a keyed hash.
    ip_hash = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    page_url = models.CharField(max_length=2000, blank=True)
    tcf_string = models.TextField(blank=True, help_text="IAB TCF consent string, as sent.")
    gcm_flags = models.JSONField(
        default=dict, blank=True, help_text="Google Consent Mode flags, as sent."
    )
    event_message_id = models.CharField(max_length=255, blank=True)
    # PROTECT: the log is append-only (SET_NULL would be an UPDATE the trigger
    # refuses), and who entered a statement is part of its proof. Deactivate such
    # an admin instead of deleting them.
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-given_at", "-id"]
        indexes = [
            models.Index(fields=["profile", "purpose", "-given_at"], name="consent_log_lookup_idx")
        ]

    def __str__(self) -> str:
        return f"{self.purpose_id} {self.status} at {self.given_at:%Y-%m-%d %H:%M}"


class ConsentState(models.Model):
    """The current statement per profile and purpose (the latest by when it was
    given), derived from the log so that filters over millions of profiles are
    one indexed join. Expiry is applied when read."""

    profile = models.ForeignKey("identity.Profile", on_delete=models.CASCADE, related_name="+")
    purpose = models.ForeignKey(Purpose, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=ConsentStatus.choices)
    given_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    record = models.ForeignKey(ConsentRecord, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["profile", "purpose"], name="consent_state_uniq")
        ]
        indexes = [
            models.Index(fields=["purpose", "status", "profile"], name="consent_state_filter_idx")
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} {self.purpose_id} {self.status}"


class SuppressionEntry(models.Model):
    """An erased person's identifier, as a keyed hash: events carrying it are
    dropped at ingestion, so an erased person is not rebuilt by the next event."""

    identifier_type = models.CharField(max_length=50)
    value_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    request = models.ForeignKey(
        "consent.DataSubjectRequest",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name_plural = "suppression entries"
        constraints = [
            models.UniqueConstraint(
                fields=["identifier_type", "value_hash"], name="suppression_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.identifier_type}:{self.value_hash[:12]}…"


class RequestType(models.TextChoices):
    ACCESS = "access", "Access (Art. 15)"
    PORTABILITY = "portability", "Portability / export (Art. 20)"
    ERASURE = "erasure", "Erasure (Art. 17)"
    RECTIFICATION = "rectification", "Rectification (Art. 16)"
    RESTRICTION = "restriction", "Restriction (Art. 18)"
    OBJECTION = "objection", "Objection (Art. 21)"


class RequestStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    VERIFIED = "verified", "Identity verified"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    REJECTED = "rejected", "Rejected"


OPEN_STATUSES = (RequestStatus.RECEIVED, RequestStatus.VERIFIED, RequestStatus.IN_PROGRESS)


class DataSubjectRequest(models.Model):
    """A person's request about their data, with its legal deadline."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=20, choices=RequestType.choices)
    subject = models.CharField(
        max_length=300,
        help_text="The person, as an external id: email:ada@example.com, user_id:42, "
        "phone:+44..., anonymous_id:..., id:<profile uuid>.",
    )
    received_at = models.DateTimeField()
    due_date = models.DateField(editable=False)
    extension_months = models.PositiveSmallIntegerField(default=0, editable=False)
    extension_reason = models.TextField(blank=True, editable=False)
    status = models.CharField(
        max_length=20, choices=RequestStatus.choices, default=RequestStatus.RECEIVED
    )
    details = models.TextField(
        blank=True, help_text="What the person asked for (e.g. which data to rectify)."
    )
    # Work state: progress for people, checkpoint for the resumable erasure task.
    progress = models.PositiveSmallIntegerField(default=0, editable=False)
    progress_note = models.CharField(max_length=200, blank=True, editable=False)
    work_state = models.JSONField(default=dict, blank=True, editable=False)
    # What was erased (counts per table), without personal data: the proof.
    erasure_summary = models.JSONField(default=dict, blank=True, editable=False)
    subject_hash = models.CharField(max_length=64, blank=True, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = "data-subject request"
        ordering = ["due_date", "received_at"]
        indexes = [models.Index(fields=["status", "due_date"], name="dsr_open_due_idx")]
        permissions = [
            ("process_datasubjectrequest", "Can verify, run, complete and reject requests"),
            ("export_datasubjectrequest", "Can download a person's data export"),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} request {str(self.id)[:8]}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def original_due_date(self) -> date:
        """One month after receipt: the deadline without extension, and the last
        day on which an extension may be decided (Art. 12(3))."""
        from django.utils import timezone

        from .deadlines import due_date

        return due_date(timezone.localdate(self.received_at))


class RequestEvent(models.Model):
    """Who did what to a request, and when: the request's own audit trail."""

    request = models.ForeignKey(DataSubjectRequest, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=50)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.action} at {self.at:%Y-%m-%d %H:%M}"


class ErasureHookOutcome(models.Model):
    """What each deletion hook (export destinations) answered for an erasure."""

    class Outcome(models.TextChoices):
        OK = "ok", "Deleted"
        FAILED = "failed", "Failed"
        NOT_APPLICABLE = "not_applicable", "Nothing to delete"

    request = models.ForeignKey(
        DataSubjectRequest, on_delete=models.CASCADE, related_name="hook_outcomes"
    )
    hook = models.CharField(max_length=100)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    message = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    # A failed hook is tried again from then (empty: no further attempt).
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "hook"], name="erasure_hook_once")
        ]

    def __str__(self) -> str:
        return f"{self.hook}: {self.outcome}"
