"""What the demo shows of personalization: two placements of the demo shop, their
content variants, and rules that map the demo's segments (and the largest
clustering persona) to them, one with a holdout to measure lift.

Run by ``load_demo`` after segments and clustering (a demo step). A newcomer opens
*Content mapping* in admin and sees the grid filled in, or asks the decision API
what a customer of "Currently browsing shoes" sees on the home page.
"""

from __future__ import annotations

from typing import Any

from apps.events.demo import demo_steps
from apps.segments.models import Segment, SegmentKind

from .models import Placement, Rule
from .services import placement_create, rule_create, variant_create

SITE = "https://shop.example.com"

# placement key -> (name, default variant, other variants)
PLACEMENTS: dict[str, tuple[str, dict[str, Any], list[dict[str, Any]]]] = {
    "home_hero": (
        "Home page hero",
        {
            "key": "hero-default",
            "name": "New season",
            "payload": {
                "headline": "The new season is in",
                "body": "Fresh picks across every department.",
                "image_url": f"{SITE}/img/hero/new-season.jpg",
                "cta_text": "Shop new in",
                "cta_url": f"{SITE}/new",
            },
        },
        [
            {
                "key": "hero-shoes",
                "name": "Shoes you looked at",
                "payload": {
                    "headline": "Still thinking about those shoes?",
                    "body": "Free returns on every pair, 30 days to decide.",
                    "image_url": f"{SITE}/img/hero/shoes.jpg",
                    "cta_text": "Back to shoes",
                    "cta_url": f"{SITE}/c/shoes",
                },
            },
            {
                "key": "hero-vip",
                "name": "Thank you, VIP",
                "payload": {
                    "headline": "Early access, just for you",
                    "body": "Our best customers shop the sale a day early.",
                    "cta_text": "Shop early",
                    "cta_url": f"{SITE}/vip",
                },
            },
            {
                "key": "hero-comeback",
                "name": "We miss you",
                "payload": {
                    "headline": "We miss you: 15 % off your next order",
                    "body": "Use code COMEBACK15 at checkout.",
                    "cta_text": "Claim it",
                    "cta_url": f"{SITE}/?coupon=COMEBACK15",
                },
            },
        ],
    ),
    "cart_banner": (
        "Cart page banner",
        {
            "key": "cart-default",
            "name": "Free shipping over 75",
            "payload": {"headline": "Free shipping on orders over $75"},
        },
        [
            {
                "key": "cart-nudge",
                "name": "Finish your order",
                "payload": {
                    "headline": "Your cart is waiting",
                    "body": "Complete your order today and shipping is on us.",
                    "cta_text": "Check out",
                    "cta_url": f"{SITE}/checkout",
                },
            },
            {
                "key": "cart-picks",
                "name": "Picked for their persona",
                "payload": {
                    "headline": "Picked for you: more like what you love",
                    "cta_text": "See the picks",
                    "cta_url": f"{SITE}/picks",
                },
            },
        ],
    ),
}

# (placement, segment key, variant, priority, holdout percent)
RULES: list[tuple[str, str, str, int, int]] = [
    ("home_hero", "browsing-shoes", "hero-shoes", 30, 0),
    ("home_hero", "champions", "hero-vip", 20, 0),
    # A win-back offer: one in ten is held out, so its lift can be measured.
    ("home_hero", "at-risk", "hero-comeback", 10, 10),
    ("cart_banner", "cart-abandoned-24h", "cart-nudge", 10, 0),
]


def demo_personalization() -> str:
    if Placement.objects.exists():
        return "  content:            placements already there, none added"
    variants: dict[str, Any] = {}
    placements: dict[str, Placement] = {}
    for key, (name, default, others) in PLACEMENTS.items():
        placement = placement_create(key=key, name=name, default_variant=default)
        placements[key] = placement
        variants[default["key"]] = placement.default_variant
        for other in others:
            variants[other["key"]] = variant_create(placement=placement, **other)
    made = 0
    for placement_key, segment_key, variant_key, priority, holdout in RULES:
        segment = Segment.objects.filter(key=segment_key).first()
        if segment is None:
            continue
        rule_create(
            placement=placements[placement_key],
            segment=segment,
            variant=variants[variant_key],
            priority=priority,
            holdout_percent=holdout,
        )
        made += 1
    # The largest persona of the demo's clustering, if it ran, gets picks on the
    # cart page (below the abandoned carts' nudge): personas map to content as
    # rule segments do, and keep their mapping through the nightly re-runs.
    persona = Segment.objects.filter(kind=SegmentKind.CLUSTER, enabled=True).order_by("-size")
    if (top := persona.first()) is not None:
        cart = placements["cart_banner"]
        rule_create(placement=cart, segment=top, variant=variants["cart-picks"], priority=5)
        made += 1
    return (
        f"  content:            {len(placements)} placements, {len(variants)} variants, "
        f"{made} rules ({Rule.objects.filter(holdout_percent__gt=0).count()} with a holdout)"
    )


# After segments (20) and clustering (30): the rules map their segments.
demo_steps.register("personalization.content", demo_personalization, order=40)
