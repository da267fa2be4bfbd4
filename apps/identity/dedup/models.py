"""Models of probabilistic deduplication.

Imported from ``apps/identity/models.py`` so that they belong to the ``identity`` app
(and its migrations).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from .compare import LEVELS, Comparator

__all__ = [
    "DedupBlockKey",
    "DedupConfig",
    "DedupField",
    "DedupRun",
    "DedupValueFrequency",
    "DuplicateCandidate",
]


class DedupConfig(models.Model):
    """The one dedup configuration (row id 1): thresholds and run settings.

    Scores are Fellegi-Sunter match weights: the sum over fields of
    log2(m / u) for the level at which the two profiles agree on that field. Both
    decisions are on the match probability the score gives with the prior EM
    estimates (``Model.probability``), which the review queue shows.
    """

    SINGLETON_ID = 1

    auto_merge_probability = models.FloatField(
        default=0.99,
        help_text="Pairs at least this likely one person (and without a veto) are merged "
        "automatically, through the same safe merge as everything else. At most 0.999, "
        "the highest probability the model states.",
    )
    review_probability = models.FloatField(
        default=0.5,
        help_text="Pairs at least this likely one person, below the auto-merge "
        "probability, wait for review (0.5: more likely one person than two).",
    )
    estimate_weights = models.BooleanField(
        default=True,
        help_text="Estimate m and u probabilities without labels (EM) on each full run. "
        "Fields with manual probabilities or weights keep them.",
    )
    max_block_size = models.PositiveIntegerField(
        default=200,
        help_text="Blocks (profiles sharing one blocking key) larger than this are skipped: "
        "such a key (a junk birthday, a shared office phone) says little about identity.",
    )
    enabled = models.BooleanField(default=True, help_text="Run on the schedule.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "dedup configuration"
        verbose_name_plural = "dedup configuration"

    def __str__(self) -> str:
        return "Dedup configuration"

    def clean(self) -> None:
        from .fellegi_sunter import PROBABILITY_MAX, PROBABILITY_MIN

        if not PROBABILITY_MIN < self.auto_merge_probability <= PROBABILITY_MAX:
            raise ValidationError(
                {
                    "auto_merge_probability": f"A probability above {PROBABILITY_MIN} "
                    f"and at most {PROBABILITY_MAX}."
                }
            )
        if not PROBABILITY_MIN < self.review_probability <= self.auto_merge_probability:
            raise ValidationError(
                {
                    "review_probability": f"A probability above {PROBABILITY_MIN} and "
                    "at most the auto-merge one."
                }
            )


class DedupField(models.Model):
    """One trait compared between profiles.

    The built-in rows (Segment reserved traits) are created on first use; admins
    may disable them, change their probabilities, or add fields of their own.
    """

    config = models.ForeignKey(DedupConfig, on_delete=models.CASCADE, related_name="fields")
    name = models.SlugField(
        max_length=50, help_text="e.g. first_name; built-in names have built-in blocking."
    )
    trait = models.CharField(
        max_length=200, help_text="Trait path in Profile.traits, dotted: address.city"
    )
    comparator = models.CharField(max_length=20, choices=Comparator.choices)
    enabled = models.BooleanField(default=True)
    blocking = models.BooleanField(
        default=False,
        help_text="Also use the exact (normalized) value as a blocking key (custom fields).",
    )
    m_probabilities = models.JSONField(
        null=True,
        blank=True,
        help_text="Manual P(level | same person), one number per level from 'different' "
        "up to 'exact'. Empty: estimated (or the built-in default).",
    )
    u_probabilities = models.JSONField(
        null=True,
        blank=True,
        help_text="Manual P(level | different people), one number per level.",
    )
    weights = models.JSONField(
        null=True,
        blank=True,
        help_text="Manual match weight per level (overrides m and u), e.g. [-4, 2, 6, 9].",
    )
    frequency_adjusted = models.BooleanField(
        default=False,
        help_text="Exact agreement on a rare value weighs more than on a common one "
        "(two Severin Ullrichs say more than two John Smiths). Not with manual weights.",
    )
    position = models.PositiveSmallIntegerField(default=100)

    class Meta:
        ordering = ["position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["config", "name"], name="dedup_field_name_uniq")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        levels = len(LEVELS.get(self.comparator, ()))
        for attr in ("m_probabilities", "u_probabilities", "weights"):
            value: Any = getattr(self, attr)
            if value is None:
                continue
            if (
                not isinstance(value, list)
                or len(value) != levels
                or not all(isinstance(v, int | float) for v in value)
            ):
                raise ValidationError({attr: f"Give a list of {levels} numbers."})
            if attr != "weights" and (
                any(v <= 0 or v > 1 for v in value) or abs(sum(value) - 1) > 0.01
            ):
                raise ValidationError({attr: "Probabilities in (0, 1] that add up to 1."})
        if (self.m_probabilities is None) != (self.u_probabilities is None):
            raise ValidationError("Give both m and u probabilities, or neither.")


class DedupRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Mode(models.TextChoices):
        FULL = "full", "Full"
        INCREMENTAL = "incremental", "Incremental"

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    mode = models.CharField(max_length=20, choices=Mode.choices)
    profiles_scanned = models.PositiveIntegerField(
        default=0, help_text="Profiles compared (changed ones, in an incremental run)."
    )
    profiles_loaded = models.PositiveIntegerField(
        default=0, help_text="Profiles read: the scanned ones and those sharing a block."
    )
    pairs_compared = models.PositiveBigIntegerField(default=0)
    auto_merged = models.PositiveIntegerField(default=0)
    queued = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    duration_seconds = models.FloatField(null=True, blank=True)
    # m/u probabilities and weights used, how they were estimated, stage timings.
    parameters = models.JSONField(default=dict, blank=True)
    config_fingerprint = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = "dedup run"

    def __str__(self) -> str:
        return f"{self.mode} run {self.started_at:%Y-%m-%d %H:%M} ({self.status})"


class DuplicateCandidate(models.Model):
    """A pair of live profiles that may be one person, with the evidence."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for review"
        MERGED = "merged", "Merged"
        REJECTED = "rejected", "Not the same person"
        REFUSED = "refused", "Refused by a safety rule"

    profile_a = models.ForeignKey("identity.Profile", on_delete=models.CASCADE, related_name="+")
    profile_b = models.ForeignKey("identity.Profile", on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(help_text="Match weight (sum of log2 m/u over fields).")
    probability = models.FloatField(default=0.0)
    # {"fields": {name: {"values": [a, b], "similarity": .., "level": .., "label": ..,
    #  "weight": ..}}, "swapped_names": bool, "first_name_slip": bool, "vetoes": [...]}
    evidence = models.JSONField(default=dict)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    note = models.CharField(max_length=500, blank=True)
    run = models.ForeignKey(
        DedupRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="candidates"
    )
    merge = models.ForeignKey(
        "identity.ProfileMerge",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-score"]
        verbose_name = "duplicate candidate"
        constraints = [
            models.CheckConstraint(
                condition=Q(profile_a__lt=F("profile_b")), name="dedup_candidate_a_lt_b"
            ),
            models.UniqueConstraint(
                fields=["profile_a", "profile_b"], name="dedup_candidate_pair_uniq"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-score"], name="dedup_candidate_queue_idx"),
            models.Index(fields=["profile_b"], name="dedup_candidate_b_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_a_id} ~ {self.profile_b_id} ({self.score:.1f})"


class DedupBlockKey(models.Model):
    """The blocking index: one row per (blocking key hash, profile).

    Lets an incremental run find, for each changed profile, the profiles sharing
    any of its blocks without reading every profile. Derived data, rebuilt by every
    full run: the primary key (key, profile) is its only index and the foreign key
    has no database constraint, so that a full rebuild (a million rows at 100,000
    profiles) is one fast COPY."""

    pk = models.CompositePrimaryKey("key", "profile")
    key = models.BigIntegerField()
    profile = models.ForeignKey(
        "identity.Profile",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )

    class Meta:
        verbose_name = "dedup blocking key"

    def __str__(self) -> str:
        return f"{self.profile_id}:{self.key}"


class DedupValueFrequency(models.Model):
    """How many live profiles had each value of a frequency-adjusted field, as of the
    last full run (values held by fewer than three are left out). Derived data, for
    incremental runs: rebuilt by every full run."""

    pk = models.CompositePrimaryKey("field", "value")
    field = models.CharField(max_length=50)
    value = models.TextField()
    count = models.PositiveIntegerField()

    class Meta:
        verbose_name = "dedup value frequency"

    def __str__(self) -> str:
        return f"{self.field}={self.value}: {self.count}"
