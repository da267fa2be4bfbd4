"""Behavioural features of a person, folded from their events in event-time order.

Pure Python (no database), so that the incremental stage, the rebuild and the
tests all run the very same fold: ``feature_fold(state, event)`` takes one event
after every event already folded into ``state``. The public names and meanings
are the segments issue's (``PUBLIC_FEATURES``); some are kept as the state they
derive from (``session_seconds_total`` for ``average_session_seconds``,
``category_counts`` for ``top_categories``) and some depend on the clock
(``days_since_last_order``, ``cart_abandoned``), so they are derived when read
(``features_public``) or, in SQL, as expressions over the stored columns.

Events follow the Segment e-commerce spec: ``Order Completed`` (revenue, else
total), ``Product Viewed`` (category), ``Product Added``, ``Checkout Started``,
``Email Opened``, ``Email Link Clicked``; page calls are page views.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

SESSION_GAP = timedelta(minutes=30)
# Money is summed as decimals of fixed scale: float sums depend on their order,
# and the incremental sum must equal the rebuilt one exactly.
MONEY_PLACES = Decimal("0.0001")
MAX_MONEY = Decimal("1e14")
MAX_CATEGORIES = 200  # distinct categories kept per person (the top 5 are shown)
TOP_CATEGORIES = 5

ORDER_COMPLETED = "Order Completed"
PRODUCT_VIEWED = "Product Viewed"
PRODUCT_ADDED = "Product Added"
CHECKOUT_STARTED = "Checkout Started"
EMAIL_OPENED = "Email Opened"
EMAIL_CLICKED = "Email Link Clicked"

PUBLIC_FEATURES = (
    "orders_count",
    "revenue_total",
    "average_order_value",
    "first_order_at",
    "last_order_at",
    "days_since_last_order",
    "first_seen_at",
    "last_seen_at",
    "active_days",
    "sessions_count",
    "average_session_seconds",
    "page_views",
    "product_views",
    "top_categories",
    "cart_adds",
    "cart_abandoned",
    "email_opens",
    "email_clicks",
    "last_device",
    "last_country",
    "rfm_recency",
    "rfm_frequency",
    "rfm_monetary",
    "rfm_group",
)


@dataclass
class FeatureState:
    """What is stored per profile (ProfileFeatures has one column per field)."""

    orders_count: int = 0
    revenue_total: Decimal = Decimal(0)
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    active_days: int = 0
    sessions_count: int = 0
    session_seconds_total: int = 0
    page_views: int = 0
    product_views: int = 0
    cart_adds: int = 0
    last_cart_at: datetime | None = None
    email_opens: int = 0
    email_clicks: int = 0
    last_device: str = ""
    last_country: str = ""
    category_counts: dict[str, int] = field(default_factory=dict)
    # Where the fold stands: the last event folded (time, then id), and the
    # session it was in.
    last_event_id: int = 0
    session_started_at: datetime | None = None
    session_id: str = ""

    def after(self, timestamp: datetime, event_id: int) -> bool:
        """Whether an event comes after everything folded so far."""
        if self.last_seen_at is None:
            return True
        return (timestamp, event_id) > (self.last_seen_at, self.last_event_id)


STATE_FIELDS = tuple(f.name for f in fields(FeatureState))


@dataclass(frozen=True, slots=True)
class EventView:
    """The parts of an event the fold reads."""

    id: int
    timestamp: datetime
    type: str
    event: str
    properties: Mapping[str, Any]
    context: Mapping[str, Any]


def _money(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value)).quantize(MONEY_PLACES, rounding=ROUND_HALF_EVEN)
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or abs(amount) >= MAX_MONEY:
        return None
    return amount


def _text(value: Any, limit: int = 100) -> str:
    if isinstance(value, str):
        return value.strip()[:limit]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def session_key(context: Mapping[str, Any]) -> str:
    """The client's session id: ``context.sessionId`` (RudderStack, mobile SDKs),
    or ``context.session_id``; empty when the client sends none."""
    return _text(context.get("sessionId")) or _text(context.get("session_id"))


def device_of(context: Mapping[str, Any]) -> str:
    """``context.device.type`` where an SDK sends it, else the kind of device
    its user agent names: mobile, tablet or desktop; empty when nothing says."""
    device = context.get("device")
    if isinstance(device, Mapping):
        kind = _text(device.get("type"), 30).lower()
        if kind:
            return kind
    agent = context.get("userAgent")
    if not isinstance(agent, str) or not agent:
        return ""
    if "iPad" in agent or "Tablet" in agent:
        return "tablet"
    if "Mobi" in agent or "Android" in agent or "iPhone" in agent:
        return "mobile"
    return "desktop"


def country_of(context: Mapping[str, Any]) -> str:
    """``context.location.country``, else the region of ``context.locale``
    ("de-AT" -> "AT")."""
    location = context.get("location")
    if isinstance(location, Mapping):
        country = _text(location.get("country"), 60)
        if country:
            return country
    locale = context.get("locale")
    if isinstance(locale, str):
        parts = locale.replace("_", "-").split("-")
        if len(parts) >= 2 and len(parts[1]) == 2 and parts[1].isalpha():
            return parts[1].upper()
    return ""


def feature_fold(state: FeatureState, event: EventView) -> None:
    """Fold one event into ``state``; it must come after every event folded
    before (``state.after``)."""
    ts = event.timestamp
    previous = state.last_seen_at
    if previous is None:
        state.first_seen_at = ts
        state.active_days = 1
    elif ts.date() != previous.date():
        state.active_days += 1

    key = session_key(event.context)
    new_session = (
        previous is None
        or ts - previous > SESSION_GAP
        or (bool(key) and bool(state.session_id) and key != state.session_id)
    )
    if new_session:
        state.sessions_count += 1
        state.session_started_at = ts
    elif previous is not None:
        state.session_seconds_total += int((ts - previous).total_seconds())
    if key:
        state.session_id = key

    if event.type == "page":
        state.page_views += 1
    elif event.type == "track":
        _track(state, event)

    device = device_of(event.context)
    if device:
        state.last_device = device
    country = country_of(event.context)
    if country:
        state.last_country = country
    state.last_seen_at = ts
    state.last_event_id = event.id


def _track(state: FeatureState, event: EventView) -> None:
    ts = event.timestamp
    name = event.event
    if name == ORDER_COMPLETED:
        state.orders_count += 1
        props = event.properties
        amount = _money(props.get("revenue"))
        if amount is None:
            amount = _money(props.get("total"))
        if amount is not None:
            state.revenue_total += amount
        if state.first_order_at is None:
            state.first_order_at = ts
        state.last_order_at = ts
    elif name == PRODUCT_VIEWED:
        state.product_views += 1
        category = _text(event.properties.get("category"))
        if category and (
            category in state.category_counts or len(state.category_counts) < MAX_CATEGORIES
        ):
            state.category_counts[category] = state.category_counts.get(category, 0) + 1
    elif name == PRODUCT_ADDED:
        state.cart_adds += 1
        state.last_cart_at = ts
    elif name == CHECKOUT_STARTED:
        state.last_cart_at = ts
    elif name == EMAIL_OPENED:
        state.email_opens += 1
    elif name == EMAIL_CLICKED:
        state.email_clicks += 1


def features_fold_all(events: list[EventView]) -> FeatureState:
    """Every event folded from scratch, in event-time order (then by id)."""
    state = FeatureState()
    for event in sorted(events, key=lambda e: (e.timestamp, e.id)):
        feature_fold(state, event)
    return state


def top_categories(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]
    return [{"category": name, "count": n} for name, n in ranked]


def cart_abandoned(state: Any, now: datetime, after: timedelta) -> bool:
    """A cart add or checkout start with no order since, ``after`` ago or more."""
    cart = state.last_cart_at
    if cart is None or now - cart < after:
        return False
    return state.last_order_at is None or state.last_order_at < cart
