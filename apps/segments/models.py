from django.db import models


class RfmGroup(models.TextChoices):
    CHAMPIONS = "Champions"
    LOYAL = "Loyal"
    POTENTIAL_LOYALISTS = "Potential Loyalists"
    NEW = "New"
    PROMISING = "Promising"
    NEED_ATTENTION = "Need Attention"
    AT_RISK = "At Risk"
    CANT_LOSE_THEM = "Can't Lose Them"
    HIBERNATING = "Hibernating"
    LOST = "Lost"


class ProfileFeatures(models.Model):
    """A person's behavioural features: one row per live profile, a typed column
    per feature, so that batch SQL over millions of profiles reads columns, not
    JSON (apps/segments/features.py says what each one means).

    Written by the pipeline stage as events are processed, in event-time order,
    and by ``features_rebuild``; the rfm_* columns by the periodic RFM scoring
    (quintiles over every profile with an order).
    """

    profile = models.OneToOneField(
        "identity.Profile", primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    orders_count = models.PositiveIntegerField(default=0)
    # Room for a billion orders at the largest amount one may count (features.py).
    revenue_total = models.DecimalField(max_digits=30, decimal_places=4, default=0)
    first_order_at = models.DateTimeField(null=True, blank=True)
    last_order_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    active_days = models.PositiveIntegerField(default=0)
    sessions_count = models.PositiveIntegerField(default=0)
    session_seconds_total = models.BigIntegerField(default=0)
    page_views = models.PositiveIntegerField(default=0)
    product_views = models.PositiveIntegerField(default=0)
    cart_adds = models.PositiveIntegerField(default=0)
    last_cart_at = models.DateTimeField(null=True, blank=True)
    email_opens = models.PositiveIntegerField(default=0)
    email_clicks = models.PositiveIntegerField(default=0)
    last_device = models.CharField(max_length=30, blank=True, default="")
    last_country = models.CharField(max_length=60, blank=True, default="")
    category_counts = models.JSONField(default=dict, blank=True)
    rfm_recency = models.PositiveSmallIntegerField(null=True, blank=True)
    rfm_frequency = models.PositiveSmallIntegerField(null=True, blank=True)
    rfm_monetary = models.PositiveSmallIntegerField(null=True, blank=True)
    rfm_group = models.CharField(max_length=30, choices=RfmGroup.choices, blank=True, default="")
    # Where the fold stands (the last event folded, and its session).
    last_event_id = models.BigIntegerField(default=0)
    session_started_at = models.DateTimeField(null=True, blank=True)
    session_id = models.CharField(max_length=100, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "profile features"
        indexes = [models.Index(fields=["rfm_group"], name="features_rfm_group_idx")]

    def __str__(self) -> str:
        return f"features of {self.profile_id}"


class SegmentKind(models.TextChoices):
    RULE = "rule", "Rule"
    CLUSTER = "cluster", "Cluster"


class Segment(models.Model):
    """A group of profiles: a rule segment (a condition tree, apps/segments/
    conditions.py) evaluated in real time and refreshed in batch, or a segment
    whose members another app writes (a cluster persona)."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    kind = models.CharField(max_length=10, choices=SegmentKind.choices, default=SegmentKind.RULE)
    # The public condition format; null for segments whose members are written
    # by another app.
    condition = models.JSONField(null=True, blank=True)
    # The segment keys the condition refers to (kept for cycle checks and for
    # refreshing dependants when a referenced segment changes).
    refs = models.JSONField(default=list, blank=True, editable=False)
    min_size = models.PositiveIntegerField(
        default=0,
        help_text="Below this many members the segment is not activated: no export or "
        "decision uses it, so that no audience singles a person out.",
    )
    enabled = models.BooleanField(default=True, help_text="Evaluated in real time and refreshed.")
    # The refresh that wrote the current memberships (0: never refreshed).
    version = models.PositiveIntegerField(default=0, editable=False)
    size = models.PositiveIntegerField(default=0, editable=False)
    refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name or self.key

    @property
    def activated(self) -> bool:
        return self.enabled and self.size >= self.min_size


class MembershipSource(models.TextChoices):
    REALTIME = "realtime", "Real-time evaluation"
    REFRESH = "refresh", "Batch refresh"
    RECHECK = "recheck", "Window expiry"
    MERGE = "merge", "Profile merge"
    CLUSTER = "cluster", "Clustering"


class Membership(models.Model):
    """One stay of a profile in a segment: entered, exited (null while current),
    and why (``reason``: which conditions held, with which values)."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: membership_exited_idx (segment, exited_at) serves every
    # lookup by segment, and one index fewer is written per row (a first cluster
    # run writes a million).
    # No database constraint either (migration 0007): its per-row trigger was a
    # query and a row lock on the same few segment rows for each of a swap's
    # million rows (2.4 s of a first cluster run). The writers lock each segment
    # row once instead (FOR KEY SHARE in _segments_kept; the swaps FOR UPDATE),
    # and segment_delete locks it FOR UPDATE before collecting the cascade, so a
    # writer either finishes before the delete collects, or finds the segment
    # gone and writes nothing for it.
    segment = models.ForeignKey(
        Segment,
        on_delete=models.CASCADE,
        related_name="memberships",
        db_index=False,
        db_constraint=False,
    )
    # No database constraint (migration 0008): its per-row trigger locked every
    # profile a swap wrote (a million in a first cluster run, 3.1 s). Locks keep
    # what it guaranteed (_erasure_lock in memberships.py).
    profile = models.ForeignKey(
        "identity.Profile",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)
    reason = models.JSONField(default=dict, blank=True)
    exit_reason = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=10, choices=MembershipSource.choices)
    # The segment's refresh version when this row was written (0: between refreshes).
    version = models.PositiveIntegerField(default=0)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "profile"],
                condition=models.Q(exited_at__isnull=True),
                name="membership_current_uniq",
            )
        ]
        indexes = [
            models.Index(fields=["profile", "segment"], name="membership_profile_idx"),
            # A profile's current rows (real time reads them for every event): the
            # plan stays an index scan by profile even while the statistics lag
            # behind a refresh that has just written many rows.
            models.Index(
                fields=["profile", "segment"],
                condition=models.Q(exited_at__isnull=True),
                name="membership_profile_cur_idx",
            ),
            models.Index(
                fields=["segment", "entered_at", "id"],
                condition=models.Q(exited_at__isnull=True),
                name="membership_current_idx",
            ),
            models.Index(fields=["segment", "exited_at"], name="membership_exited_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} in {self.segment_id}"


class MembershipChange(models.Model):
    """The membership outbox: every entry and exit, in order (``id``), for
    exports and webhooks to consume."""

    class Kind(models.TextChoices):
        ENTERED = "entered"
        EXITED = "exited"

    id = models.BigAutoField(primary_key=True)
    # No index of its own: membership_change_seg_idx (segment, id) serves it. No
    # database constraint: see Membership.segment.
    segment = models.ForeignKey(
        Segment, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    # No database constraint: see Membership.profile.
    profile = models.ForeignKey(
        "identity.Profile",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    at = models.DateTimeField()
    source = models.CharField(max_length=10, choices=MembershipSource.choices)
    version = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["segment", "id"], name="membership_change_seg_idx"),
            models.Index(fields=["profile"], name="membership_change_prof_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} {self.kind} {self.segment_id}"


class MembershipRecheck(models.Model):
    """When a profile's standing in a segment may change with no new event (the
    oldest counted event of a ``performed`` window leaves it): the expiry sweep
    reads only the rows that are due."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="+")
    profile = models.ForeignKey(
        "identity.Profile", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    due_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "profile"], name="recheck_uniq"),
        ]
        indexes = [
            models.Index(fields=["due_at"], name="recheck_due_idx"),
            models.Index(fields=["profile"], name="recheck_profile_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} in {self.segment_id} at {self.due_at}"


class SegmentRefresh(models.Model):
    """One batch refresh: the version it wrote and what changed."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="refreshes")
    version = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    entered = models.PositiveIntegerField()
    exited = models.PositiveIntegerField()
    size = models.PositiveIntegerField()
    method = models.CharField(max_length=10, help_text="sql, or python where there is no compiler")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["segment", "version"], name="segment_refresh_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.segment_id} v{self.version}"


class RefreshStaging(models.Model):
    """A refresh's new member set, written and read inside the refresh's own
    transaction (never visible to anyone else)."""

    id = models.BigAutoField(primary_key=True)
    refresh_token = models.BigIntegerField()
    profile_id = models.UUIDField()
    reason = models.JSONField(default=dict)
    recheck_at = models.DateTimeField(null=True)

    class Meta:
        indexes = [models.Index(fields=["refresh_token", "profile_id"], name="staging_idx")]

    def __str__(self) -> str:
        return f"{self.refresh_token} {self.profile_id}"


class WrittenStaging(models.Model):
    """Members another app computes in chunks (each in its own transaction, on
    any worker) and stages under one token until a single swap makes them
    current (apps/segments/written.py). ``slot`` is the writer's own number for
    the segment (a cluster's index); nobody reads these rows but the swap. On
    PostgreSQL the table is unlogged: a crash loses only runs in progress."""

    id = models.BigAutoField(primary_key=True)
    token = models.BigIntegerField()
    chunk = models.IntegerField()
    slot = models.IntegerField()
    profile_id = models.UUIDField()
    distance = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["token", "chunk"], name="written_staging_idx")]

    def __str__(self) -> str:
        return f"{self.token}/{self.chunk} {self.profile_id}"
