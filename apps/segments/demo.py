"""What the demo shows of segments: rule segments a marketer would make. The demo's
live visit (``DemoGenerator.live_events``) gives the real-time one, "currently
browsing shoes", members who leave it by themselves when the hour is over.

Run by ``load_demo`` after the events are processed and the RFM scores are set
(apps/segments/registrations.py registers it as a demo step). Saving a segment
refreshes it, so each one has its members at once.
"""

from __future__ import annotations

from typing import Any

from .memberships import segment_save
from .models import Segment

# The demo's catalogue names its categories this way (apps/events/demo.py).
SHOES = "Shoes"

BROWSING_SHOES: dict[str, Any] = {
    "type": "performed",
    "event": "Product Viewed",
    "where": [{"path": "properties.category", "op": "equals", "value": SHOES}],
    "times": 3,
    "times_op": ">=",
    "within_seconds": 3600,
}


def _feature(name: str, op: str, value: Any) -> dict[str, Any]:
    return {"type": "feature", "name": name, "op": op, "value": value}


# (key, name, description, condition)
DEMO_SEGMENTS: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "browsing-shoes",
        "Currently browsing shoes",
        "Viewed shoes three times within the last hour; leaves when the hour is over.",
        BROWSING_SHOES,
    ),
    (
        "cart-abandoned-24h",
        "Cart abandoned in the last 24 h",
        "Put something in the cart or started checking out in the last 24 hours, and "
        "did not order within the hour after.",
        {
            "type": "and",
            "children": [
                _feature("cart_abandoned", "equals", True),
                {
                    "type": "or",
                    "children": [
                        {"type": "performed", "event": "Product Added", "within_seconds": 86400},
                        {"type": "performed", "event": "Checkout Started", "within_seconds": 86400},
                    ],
                },
            ],
        },
    ),
    (
        "champions",
        "Champions",
        "Bought recently, often and for a lot (RFM).",
        _feature("rfm_group", "equals", "Champions"),
    ),
    (
        "at-risk",
        "At Risk",
        "Used to buy often and for a lot, but not lately (RFM).",
        _feature("rfm_group", "equals", "At Risk"),
    ),
    (
        "repeat-buyers",
        "Repeat buyers",
        "Three orders or more.",
        _feature("orders_count", "gte", 3),
    ),
    (
        "lapsed-customers",
        "Lapsed customers",
        "Ordered before, but not in the last 60 days.",
        {
            "type": "and",
            "children": [
                _feature("orders_count", "gte", 1),
                _feature("days_since_last_order", "gt", 60),
            ],
        },
    ),
    (
        "window-shoppers",
        "Window shoppers",
        "Looked at ten products or more and never ordered.",
        {
            "type": "and",
            "children": [
                _feature("product_views", "gte", 10),
                _feature("orders_count", "equals", 0),
            ],
        },
    ),
    (
        "newsletter-readers",
        "Newsletter readers who agreed to personalization",
        "Opened three emails or more, and consent to personalization.",
        {
            "type": "and",
            "children": [
                _feature("email_opens", "gte", 3),
                {"type": "consent", "purpose": "personalization"},
            ],
        },
    ),
    (
        "loyal-but-slipping",
        "Repeat buyers who are slipping away",
        "Repeat buyers who are not lapsed yet, but not champions either: refers to "
        "two other segments.",
        {
            "type": "and",
            "children": [
                {"type": "segment", "key": "repeat-buyers"},
                {"type": "not", "child": {"type": "segment", "key": "champions"}},
                _feature("days_since_last_order", "gt", 30),
            ],
        },
    ),
]


def demo_segments() -> str:
    """Save the demo's segments (those not there yet)."""
    made = []
    for key, name, description, condition in DEMO_SEGMENTS:
        segment = Segment.objects.filter(key=key).first()
        if segment is None:
            segment = segment_save(key=key, name=name, description=description, condition=condition)
        made.append(f"{segment.key} {segment.size:,}")
    return (
        f"  segments:           {len(made)} rule segments ({', '.join(made)}); the "
        "shoppers of the live visit leave browsing-shoes by themselves within the hour"
    )
