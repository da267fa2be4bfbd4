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
