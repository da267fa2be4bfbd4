"""Realistic e-commerce demo data as Segment-spec events, from one seeded generator.

Pure Python (no Django), so a seed always yields the same events whatever the
database, and the generator can be tested and timed on its own. Times are anchored
to midnight UTC of the ``now`` given: a seed gives the same events, shifted by whole
days, whenever it runs (so "same seed, same data" holds across days too).

Who is in it:
- customers, each with one of the behaviour profiles in ``PERSONAS``. They differ in
  how often they come, which categories they look at, what they spend, whether they
  use coupons, open emails or stopped coming, so clustering has structure to find;
- every customer is first an anonymous visitor, signs up with an ``identify`` that
  links the anonymousId to the userId, and a quarter of them later log in on a
  second device;
- anonymous visitors who never sign up;
- a few people with a second account (another userId, an email/name with a typo,
  the address written differently). Nothing in the events marks them: the answer
  key stays in memory (``DemoGenerator.duplicate_pairs``) for evaluating dedup;
- a few customers who, before opening their account, subscribed to the newsletter
  on another device (an ``identify`` with traits and no userId). Half gave their
  name and a mistyped email: dedup merges them. Half went by a nickname, or mistyped
  their last name, with another email: dedup leaves them to review
  (``DemoGenerator.newsletter_pairs``).
"""

from __future__ import annotations

import math
import random
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

from faker import Faker

from apps.common.registry import Registry

# Run by load_demo after the events are processed, in order: the apps above events
# finish what they show of the demo (segments: RFM scores). Each returns a line
# for load_demo's summary.
demo_steps: Registry[Callable[[], str]] = Registry("events.demo_steps")

SITE = "https://shop.example.com"
SHOP_NAME = "Demo Shop"
CURRENCY = "USD"
TAX_RATE = 0.08
FREE_SHIPPING_FROM = 75.0
SHIPPING = 5.99
LIBRARY = {"name": "analytics.js", "version": "5.2.1"}
# Coupon code -> share of the subtotal taken off (FREESHIP waives shipping instead).
COUPONS = {"SAVE10": 0.10, "SPRING15": 0.15, "FLASH20": 0.20, "WELCOME10": 0.10, "FREESHIP": 0.0}


def _names(text: str, sep: str = ", ") -> tuple[str, ...]:
    # Long lists as one string: the formatter would put each item on its own line.
    return tuple(text.split(sep))


# category -> (brands from premium to budget, product names, (low, high) base price)
_CATALOGUE_SPEC: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[float, float]]] = {
    "Electronics": (
        ("Voltix", "Nordsound", "Pixelcraft", "Ampere"),
        _names(
            "Wireless Earbuds, Bluetooth Speaker, Smartwatch, USB-C Charger, "
            "Noise-Cancelling Headphones, 4K Action Camera, E-Reader, Portable SSD, "
            "Mechanical Keyboard, HD Webcam, Fitness Tracker, Power Bank, Smart Plug, "
            "Wireless Mouse, Tablet Stand"
        ),
        (15, 320),
    ),
    "Home & Kitchen": (
        ("Copper & Oak", "Hearthstone", "Kitchenly", "Lumen Home"),
        _names(
            "Chef's Knife, Cast Iron Skillet, French Press, Espresso Machine, "
            "Linen Duvet Cover, Ceramic Dinner Set, Air Fryer, Bamboo Cutting Board, "
            "Scented Candle, Throw Blanket, Stand Mixer, Glass Storage Set, Table Lamp, "
            "Bath Towel Set, Cookware Set"
        ),
        (12, 280),
    ),
    "Apparel": (
        ("Fieldhouse", "Northbound", "Urban Thread", "Mistral"),
        _names(
            "Merino Sweater, Denim Jacket, Organic Cotton T-Shirt, Rain Shell, "
            "Chino Trousers, Linen Shirt, Puffer Vest, Wool Beanie, Hoodie, Midi Dress, "
            "Leggings, Flannel Shirt, Cashmere Scarf, Polo Shirt, Parka"
        ),
        (15, 220),
    ),
    "Shoes": (
        ("Cobbleworks", "Trailhead", "Stride", "Pacer"),
        _names(
            "Running Shoes, Leather Boots, Canvas Sneakers, Trail Runners, Loafers, "
            "Sandals, Chelsea Boots, Slippers, High-Top Sneakers, Hiking Boots, "
            "Ballet Flats, Court Shoes, Derby Shoes, Espadrilles, Rain Boots"
        ),
        (25, 240),
    ),
    "Beauty": (
        ("Velvet & Vine", "Dermalab", "Glowhaus", "Pure Botanics"),
        _names(
            "Vitamin C Serum, Hydrating Moisturizer, Clay Mask, Lip Balm Set, "
            "Eau de Parfum, Hair Oil, Sunscreen SPF 50, Night Cream, Facial Cleanser, "
            "Mascara, Body Lotion, Eye Cream, Shampoo Bar, Nail Polish Set, "
            "Makeup Brush Set"
        ),
        (6, 120),
    ),
    "Sports & Outdoors": (
        ("Summit", "Peakform", "Riverbend", "Ironclad"),
        _names(
            "Yoga Mat, Adjustable Dumbbells, Camping Tent, Insulated Water Bottle, "
            "Hiking Backpack, Resistance Bands, Sleeping Bag, Cycling Helmet, Foam Roller, "
            "Trekking Poles, Jump Rope, Headlamp, Kettlebell, Camping Stove, Swim Goggles"
        ),
        (8, 400),
    ),
    "Books": (
        ("Meridian Books", "Lighthouse Press", "Paper Crane", "Inkwell"),
        _names(
            "The Quiet Harbor, Data for Humans, Cooking with Fire, The Long Walk Home, "
            "A Field Guide to Birds, Mindful Mornings, The Startup Playbook, "
            "Midnight in Lisbon, Atlas of Lost Cities, Learning Python, "
            "The Gardener's Year, Stories for Bedtime, The Art of Rest, Modern Baking, "
            "Winter Stars"
        ),
        (8, 45),
    ),
    "Toys & Games": (
        ("Puzzlewood", "Brightbox", "Tinker & Co", "Rocket Kids"),
        _names(
            "Building Blocks Set, Wooden Puzzle, Strategy Board Game, Plush Bear, "
            "Remote Control Car, Card Game, Science Kit, Art Supplies Set, Dollhouse, "
            "Marble Run, Stunt Kite, Model Train Set, Magnetic Tiles, 1000-Piece Jigsaw, "
            "Kick Scooter"
        ),
        (8, 150),
    ),
}
_TIER_PRICE = (1.5, 1.15, 0.9, 0.7)  # premium brand ... budget brand


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    sku: str
    name: str
    category: str
    brand: str
    price: float

    @property
    def kind(self) -> str:
        """What it is without the brand ("Wireless Earbuds"): what people search for."""
        return self.name.removeprefix(f"{self.brand} ")

    def properties(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "sku": self.sku,
            "name": self.name,
            "category": self.category,
            "brand": self.brand,
            "price": self.price,
        }


@dataclass(frozen=True, slots=True)
class Persona:
    """How one kind of customer behaves; each number is a tendency, not a rule."""

    name: str
    weight: float  # share of customers
    sessions_per_30_days: float
    active_from: tuple[float, float]  # when they start coming, as a share of the window
    active_until: tuple[float, float]  # when they stop coming
    views: tuple[int, int]  # products looked at in a session
    bounce_rate: float
    favourites: tuple[int, int]  # how many favourite categories
    focus: float  # share of attention on the favourites
    price_bias: float  # > 0 prefers expensive products, < 0 cheap ones
    search_rate: float
    add_rate: float  # per product viewed
    checkout_rate: float  # per session with a cart
    purchase_rate: float  # per checkout started
    max_quantity: int
    coupon_rate: float
    email_open_rate: float


PERSONAS: tuple[Persona, ...] = (
    # Come often for years, know what they like, buy the dear things, rarely need coupons.
    Persona(
        name="loyal_high_spender",
        weight=0.15,
        sessions_per_30_days=0.95,
        active_from=(0.0, 0.2),
        active_until=(0.95, 1.0),
        views=(1, 3),
        bounce_rate=0.10,
        favourites=(1, 2),
        focus=0.85,
        price_bias=1.6,
        search_rate=0.15,
        add_rate=0.55,
        checkout_rate=0.80,
        purchase_rate=0.92,
        max_quantity=2,
        coupon_rate=0.05,
        email_open_rate=0.60,
    ),
    # Search for deals across many categories, buy cheap things in bulk, with a coupon.
    Persona(
        name="bargain_hunter",
        weight=0.25,
        sessions_per_30_days=0.85,
        active_from=(0.0, 0.4),
        active_until=(0.9, 1.0),
        views=(1, 3),
        bounce_rate=0.15,
        favourites=(2, 4),
        focus=0.45,
        price_bias=-1.6,
        search_rate=0.45,
        add_rate=0.30,
        checkout_rate=0.55,
        purchase_rate=0.80,
        max_quantity=3,
        coupon_rate=0.85,
        email_open_rate=0.45,
    ),
    # Look at a lot, add little, almost never buy.
    Persona(
        name="window_shopper",
        weight=0.25,
        sessions_per_30_days=0.75,
        active_from=(0.0, 0.6),
        active_until=(0.85, 1.0),
        views=(1, 4),
        bounce_rate=0.20,
        favourites=(2, 3),
        focus=0.50,
        price_bias=0.3,
        search_rate=0.35,
        add_rate=0.07,
        checkout_rate=0.20,
        purchase_rate=0.50,
        max_quantity=1,
        coupon_rate=0.20,
        email_open_rate=0.15,
    ),
    # Bought well early in the window, then stopped coming (and reading the emails).
    Persona(
        name="lapsed",
        weight=0.15,
        sessions_per_30_days=1.4,
        active_from=(0.0, 0.15),
        active_until=(0.25, 0.45),
        views=(1, 3),
        bounce_rate=0.15,
        favourites=(1, 2),
        focus=0.70,
        price_bias=0.4,
        search_rate=0.25,
        add_rate=0.35,
        checkout_rate=0.70,
        purchase_rate=0.85,
        max_quantity=2,
        coupon_rate=0.30,
        email_open_rate=0.35,
    ),
    # Arrived in the last few weeks, busy exploring, first order with the welcome coupon.
    Persona(
        name="new",
        weight=0.20,
        sessions_per_30_days=2.6,
        active_from=(0.8, 0.93),
        active_until=(1.0, 1.0),
        views=(1, 3),
        bounce_rate=0.10,
        favourites=(1, 2),
        focus=0.65,
        price_bias=0.0,
        search_rate=0.40,
        add_rate=0.35,
        checkout_rate=0.60,
        purchase_rate=0.80,
        max_quantity=2,
        coupon_rate=0.50,
        email_open_rate=0.50,
    ),
)
# Visitors who never sign up: mostly a page or two, now and then a look around.
VISITOR = Persona(
    name="anonymous_visitor",
    weight=0.0,
    sessions_per_30_days=0.0,
    active_from=(0.0, 0.95),
    active_until=(1.0, 1.0),
    views=(1, 4),
    bounce_rate=0.45,
    favourites=(1, 3),
    focus=0.5,
    price_bias=0.0,
    search_rate=0.25,
    add_rate=0.08,
    checkout_rate=0.0,
    purchase_rate=0.0,
    max_quantity=1,
    coupon_rate=0.0,
    email_open_rate=0.0,
)

_COUNTRIES = (  # code, share, Faker locale, page locales, time zones
    (
        "US",
        0.60,
        "en_US",
        ("en-US",),
        ("America/New_York", "America/Chicago", "America/Los_Angeles"),
    ),
    ("CA", 0.10, "en_CA", ("en-CA", "en-CA", "fr-CA"), ("America/Toronto", "America/Vancouver")),
    ("GB", 0.12, "en_GB", ("en-GB",), ("Europe/London",)),
    ("DE", 0.10, "de_DE", ("de-DE",), ("Europe/Berlin",)),
    ("FR", 0.08, "fr_FR", ("fr-FR",), ("Europe/Paris",)),
)
# Numbers reserved for fiction, so no real person's phone ends up in demo data.
_US_AREA_CODES = _names(
    "201 202 203 205 206 207 208 210 212 213 214 215 216 217 218 219 224 225 228 229 231 234 "
    "239 240 248 251 252 253 254 256 260 262 267 269 270 281 301 302 303 304 305 307 308 309 "
    "310 312 313 314 315 316 317 318 319 320 321 323 330 334 336 337 339 347 351 352 360 361",
    sep=" ",
)
_CA_AREA_CODES = _names(
    "204 226 236 250 289 306 403 416 418 438 450 506 514 519 587 604 613 647", sep=" "
)
_PHONE_FORMATS_NANP = ("e164", "e164", "dashes", "parens", "dots", "intl")

_USER_AGENTS = {
    "desktop": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
    ),
    "mobile": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
    ),
}
# People shop in the evening more than at night (UTC is close enough for a demo).
_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 6, 6, 5, 5, 5, 6, 7, 8, 9, 8, 6, 3)
_EMAIL_DOMAINS = {
    "US": ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com", "aol.com"),
    "CA": ("gmail.com", "outlook.com", "yahoo.ca", "hotmail.com", "icloud.com"),
    "GB": ("gmail.com", "btinternet.com", "outlook.com", "yahoo.co.uk", "hotmail.co.uk"),
    "DE": ("gmail.com", "gmx.de", "web.de", "t-online.de", "outlook.de"),
    "FR": ("gmail.com", "orange.fr", "free.fr", "laposte.net", "outlook.fr"),
}
# Formal name -> the name people also sign up with.
_NICKNAMES = dict(
    pair.split("=")
    for pair in _names(
        "Robert=Bob, William=Bill, Richard=Rick, James=Jim, Michael=Mike, Elizabeth=Liz, "
        "Katherine=Kate, Catherine=Cathy, Jennifer=Jen, Christopher=Chris, Thomas=Tom, "
        "Margaret=Maggie, Daniel=Dan, Joseph=Joe, Anthony=Tony, Matthew=Matt, Patricia=Pat, "
        "Susan=Sue, Jessica=Jess, Samantha=Sam, Alexander=Alex, Benjamin=Ben, Nicholas=Nick, "
        "Jonathan=Jon, Stephanie=Steph, Rebecca=Becky, Andrew=Andy, Edward=Ed, Timothy=Tim, "
        "Kenneth=Ken, Steven=Steve, Deborah=Debbie, Victoria=Vicky, Charles=Charlie, "
        "David=Dave, Ronald=Ron, Donald=Don, Gregory=Greg, Peter=Pete, Frederick=Fred, "
        "Johannes=Hannes, Alexandra=Sandra, Christina=Tina, Nathaniel=Nate, Zachary=Zach, "
        "Abigail=Abby, Kimberly=Kim, Jacqueline=Jackie, Katharina=Kathi, Wolfgang=Wolf"
    )
)
_STREET_ABBREVIATIONS = tuple(
    tuple(pair.split("=", 1))
    for pair in _names(
        "Street=St., Avenue=Ave, Road=Rd, Drive=Dr., Court=Ct, Lane=Ln, Boulevard=Blvd, "
        "Place=Pl., straße=str., Straße=Str., Square=Sq, Crescent=Cres., Apt. =#, "
        "Suite=Ste, Flat=Flat no., chemin=ch., boulevard=bd, avenue=av., rue=r."
    )
)
_CAMPAIGN_THEMES = _names(
    "Weekly picks, New arrivals, Flash sale, Members' weekend, Free shipping week, "
    "Back in stock, Gift guide, Seasonal sale"
)
_AD_CAMPAIGNS = ("brand_search", "spring_sale", "retargeting", "new_collection", "gift_ideas")


@dataclass(slots=True)
class _Device:
    anonymous_id: str
    user_agent: str
    locale: str
    timezone: str


@dataclass(slots=True)
class _Person:
    index: int  # seeds this person's own Random, so their events do not depend on order
    persona: Persona
    country: str
    affinity: list[float]  # weight per category, in catalogue order
    active_from: datetime
    active_until: datetime
    devices: list[_Device]
    user_id: str | None = None  # None: stays anonymous
    traits: dict[str, Any] = field(default_factory=dict)
    newsletter: bool = False  # no account: leaves its traits once, in its first visit
    anonymous_sessions: int = 1  # sessions before signing up
    min_sessions: int = 2


@dataclass(frozen=True, slots=True)
class _Campaign:
    campaign_id: str
    name: str
    subject: str
    sent_at: datetime


@dataclass(slots=True)
class DemoStats:
    events: int = 0
    customers: int = 0  # accounts (userIds)
    anonymous_visitors: int = 0
    newsletter_signups: int = 0  # details left without an account
    orders: int = 0
    revenue: float = 0.0
    by_event: Counter[str] = field(default_factory=Counter)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "-".join("".join(c if c.isalnum() else " " for c in ascii_text.lower()).split())


def _ascii(text: str) -> str:
    text = text.replace("ß", "ss")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in ascii_text.lower() if c.isalnum())


def _money(value: float) -> float:
    return round(value + 1e-9, 2)


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: fine for the small rates used here, and needs only rng.random().
    limit, k, p = math.exp(-min(lam, 60.0)), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def build_catalogue(rng: random.Random) -> list[Product]:
    """~120 products in 8 categories, with log-uniform prices: many cheap, a few dear."""
    products = []
    for c_index, (category, (brands, names, (low, high))) in enumerate(_CATALOGUE_SPEC.items()):
        code = _ascii(category)[:3].upper()
        for n_index, name in enumerate(names):
            tier = rng.randrange(len(brands))
            base = math.exp(rng.uniform(math.log(low), math.log(high))) * _TIER_PRICE[tier]
            products.append(
                Product(
                    product_id=f"prd_{c_index + 1}{n_index + 1:03d}",
                    sku=f"{code}-{_ascii(brands[tier])[:3].upper()}-{n_index + 1:03d}",
                    name=f"{brands[tier]} {name}",
                    category=category,
                    brand=brands[tier],
                    price=max(round(base), 2) - 0.01,
                )
            )
    return products


class DemoGenerator:
    """Builds the people up front (cheap), then their events one person at a time.

    ``people_events()`` yields each person's events in time order; ``stats`` fills up
    as it goes. Same arguments, same events.
    """

    def __init__(self, *, customers: int, days: int, seed: int, now: datetime) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.start = self.end - timedelta(days=days)
        self.catalogue = build_catalogue(self.rng)
        self.categories = list(_CATALOGUE_SPEC)
        self.by_category = {
            c: [p for p in self.catalogue if p.category == c] for c in self.categories
        }
        self._product_weights: dict[tuple[str, float], list[float]] = {}
        self.campaigns = self._build_campaigns()
        self.stats = DemoStats()
        self.persona_by_user_id: dict[str, str] = {}
        self.duplicate_pairs: list[tuple[str, str]] = []  # (first userId, second userId)
        # (customer's userId, the newsletter sign-up's email, "sure" or "unsure")
        self.newsletter_pairs: list[tuple[str, str, str]] = []
        self._fakers: dict[str, Faker] = {}
        for i, (country, _, locale, _, _) in enumerate(_COUNTRIES):
            fake = Faker(locale)
            fake.seed_instance(seed * 100 + i)
            self._fakers[country] = fake
        self._emails: set[str] = set()
        self._phones: set[str] = set()
        self.people = self._build_people(customers)

    # --- people -------------------------------------------------------------------

    def _build_people(self, customers: int) -> list[_Person]:
        rng = self.rng
        people: list[_Person] = []
        personas = rng.choices(PERSONAS, weights=[p.weight for p in PERSONAS], k=customers)
        for persona in personas:
            person = self._new_person(len(people), persona)
            person.user_id = self._user_id()
            person.traits = self._traits(person.country)
            person.anonymous_sessions = 1 + (rng.random() < 0.35)
            person.min_sessions = person.anonymous_sessions + 1
            if rng.random() < 0.25:
                person.devices.append(self._device(person.country, other_than=person.devices[0]))
            people.append(person)
            self.persona_by_user_id[person.user_id] = persona.name
        for original in rng.sample(people, k=round(customers * 0.02)):
            people.append(self._duplicate(len(people), original))
        for _ in range(round(customers * 0.3)):
            people.append(self._new_person(len(people), VISITOR))
        # From a Random of their own: everyone else's data stays as it was.
        guest_rng = random.Random(f"{self.seed}:newsletter")
        early = [p for p in people if p.user_id and p.active_from - self.start > timedelta(days=4)]
        count = min(len(early), 2 * max(1, round(customers * 0.02)))
        for i, original in enumerate(guest_rng.sample(early, k=count)):
            sure = i % 2 == 0
            people.append(self._newsletter(guest_rng, len(people), original, sure=sure))
        self.stats.customers = sum(1 for p in people if p.user_id)
        self.stats.newsletter_signups = sum(1 for p in people if p.newsletter)
        self.stats.anonymous_visitors = (
            len(people) - self.stats.customers - self.stats.newsletter_signups
        )
        # Interleave everyone, so neither event ids nor profile creation order give
        # away who is a duplicate of whom.
        rng.shuffle(people)
        return people

    def _new_person(self, index: int, persona: Persona) -> _Person:
        rng = self.rng
        country = rng.choices(_COUNTRIES, weights=[c[1] for c in _COUNTRIES])[0][0]
        span = self.end - self.start
        active_from = self.start + span * rng.uniform(*persona.active_from)
        active_until = self.start + span * rng.uniform(*persona.active_until)
        if persona is VISITOR:
            active_until = min(self.end, active_from + timedelta(days=rng.uniform(1, 30)))
        if active_until - active_from < timedelta(days=2):
            active_from = max(self.start, active_until - timedelta(days=2))
        return _Person(
            index=index,
            persona=persona,
            country=country,
            affinity=self._affinity(persona),
            active_from=active_from,
            active_until=active_until,
            devices=[self._device(country)],
        )

    def _affinity(self, persona: Persona) -> list[float]:
        rng = self.rng
        favourites = set(
            rng.sample(range(len(self.categories)), k=rng.randint(*persona.favourites))
        )
        n = len(self.categories)
        weights = []
        for i in range(n):
            share = (
                persona.focus / len(favourites)
                if i in favourites
                else (1 - persona.focus) / (n - len(favourites))
            )
            weights.append(share * rng.gammavariate(4.0, 0.25))
        return weights

    def _device(self, country: str, other_than: _Device | None = None) -> _Device:
        rng = self.rng
        _, _, _, locales, zones = next(c for c in _COUNTRIES if c[0] == country)
        if other_than is None:
            kind = "mobile" if rng.random() < 0.55 else "desktop"
        else:  # a second device is the other kind: the phone next to the laptop
            kind = "desktop" if other_than.user_agent in _USER_AGENTS["mobile"] else "mobile"
        return _Device(
            anonymous_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            user_agent=rng.choice(_USER_AGENTS[kind]),
            locale=rng.choice(locales),
            timezone=rng.choice(zones),
        )

    def _user_id(self) -> str:
        # Random, not sequential: a second run with another seed must not reuse them.
        return f"usr_{self.rng.getrandbits(48):012x}"

    def _traits(self, country: str) -> dict[str, Any]:
        rng = self.rng
        fake = self._fakers[country]
        first, last = fake.first_name(), fake.last_name()
        traits: dict[str, Any] = {
            "firstName": first,
            "lastName": last,
            "name": f"{first} {last}",
            "email": self._email(first, last, country),
        }
        if rng.random() < 0.85:
            phone = self._phone(country)
            if phone:
                traits["phone"] = phone
        if rng.random() < 0.8:
            traits["birthday"] = (
                (
                    datetime(rng.randint(1950, 2005), 1, 1, tzinfo=UTC)
                    + timedelta(days=rng.randrange(365))
                )
                .date()
                .isoformat()
            )
        traits["address"] = self._address(country)
        return traits

    def _address(self, country: str) -> dict[str, str]:
        fake = self._fakers[country]
        state = {
            "US": lambda: fake.state_abbr(include_territories=False),
            "CA": lambda: fake.province_abbr(),
            "GB": lambda: fake.county(),
            "DE": lambda: fake.state(),
            "FR": lambda: fake.region(),
        }[country]()
        street = fake.street_address().replace("\n", ", ")  # en_GB: "Flat 5\nHigh St"
        if country == "FR" and not street[:1].isdigit():
            street = f"{self.rng.randint(1, 120)} {street}"
        return {
            "street": street,
            "city": fake.city(),
            "postalCode": fake.postcode(),
            "state": state,
            "country": country,
        }

    def _email(self, first: str, last: str, country: str, *, domain: str = "") -> str:
        rng = self.rng
        f, la = _ascii(first) or "x", _ascii(last) or "y"
        domain = domain or rng.choice(_EMAIL_DOMAINS[country])
        for attempt in range(50):
            local = (
                f"{f}.{la}",
                f"{f}{la}",
                f"{f[0]}.{la}",
                f"{f}_{la}",
                f"{f}{la[0]}",
                f"{f}.{la}{rng.randint(1, 99)}",
            )[rng.randrange(6)]
            if attempt > 5:
                local = f"{local}{rng.randint(100, 9999)}"
            email = f"{local}@{domain}"
            if email not in self._emails:
                self._emails.add(email)
                return email
        raise RuntimeError("could not find an unused demo email")  # pragma: no cover

    def _phone(self, country: str) -> str | None:
        # Each person gets their own number: a shared one would (rightly) stitch two
        # people into one profile.
        rng = self.rng
        for _ in range(30):
            if country in ("US", "CA"):
                area = rng.choice(_US_AREA_CODES if country == "US" else _CA_AREA_CODES)
                line = f"01{rng.randrange(100):02d}"
                e164 = f"+1{area}555{line}"
                style = rng.choice(_PHONE_FORMATS_NANP)
                text = {
                    "e164": e164,
                    "dashes": f"{area}-555-{line}",
                    "parens": f"({area}) 555-{line}",
                    "dots": f"{area}.555.{line}",
                    "intl": f"+1 {area}-555-{line}",
                }[style]
            else:
                e164, text = _fictional_phone(rng, country)
            if e164 not in self._phones:
                self._phones.add(e164)
                return text
        return None  # the fictional ranges are full: this person has no phone

    def _duplicate(self, index: int, original: _Person) -> _Person:
        """A second account of ``original``: typo'd email or name, address written
        differently, on a fresh device, later on."""
        rng = self.rng
        traits = {k: v for k, v in original.traits.items() if k not in ("phone", "birthday")}
        first, last = original.traits["firstName"], original.traits["lastName"]
        change = rng.choice(("nickname", "typo_last", "typo_email"))
        if change == "nickname" and first in _NICKNAMES:
            first = _NICKNAMES[first]
        elif change == "nickname" and first in _NICKNAMES.values():
            first = next(k for k, v in _NICKNAMES.items() if v == first)
        elif change in ("nickname", "typo_last"):
            last = _typo(rng, last)
        traits.update(firstName=first, lastName=last, name=f"{first} {last}")
        local, _, domain = original.traits["email"].partition("@")
        if (first, last) == (original.traits["firstName"], original.traits["lastName"]):
            email = f"{_typo(rng, local)}@{domain}"
            while email in self._emails:
                email = f"{_typo(rng, local)}@{domain}"
            self._emails.add(email)
        else:  # the new name's address, mostly at the same mail provider
            email = self._email(
                first, last, original.country, domain=domain if rng.random() < 0.7 else ""
            )
        traits["email"] = email
        if rng.random() < 0.5:  # a new (work) phone, never the same one
            phone = self._phone(original.country)
            if phone:
                traits["phone"] = phone
        if "birthday" in original.traits and rng.random() < 0.7:
            traits["birthday"] = original.traits["birthday"]
        traits["address"] = _reword_address(rng, original.traits["address"])
        span = original.active_until - original.active_from
        person = _Person(
            index=index,
            persona=original.persona,
            country=original.country,
            affinity=list(original.affinity),
            active_from=original.active_from + span * rng.uniform(0.3, 0.6),
            active_until=original.active_until,
            devices=[self._device(original.country)],
            user_id=self._user_id(),
            traits=traits,
            anonymous_sessions=1,
            min_sessions=2,
        )
        assert original.user_id is not None and person.user_id is not None
        self.duplicate_pairs.append((original.user_id, person.user_id))
        self.persona_by_user_id[person.user_id] = original.persona.name
        return person

    def _newsletter(
        self, rng: random.Random, index: int, original: _Person, *, sure: bool
    ) -> _Person:
        """``original``'s newsletter sign-up on another device, days before their
        account (so the account's traits are the newer ones). ``sure``: the same name
        and a mistyped email; otherwise a nickname (or a slip in the last name) and
        another email, nothing dedup can be sure of."""
        first, last = original.traits["firstName"], original.traits["lastName"]
        local, _, domain = original.traits["email"].partition("@")
        traits: dict[str, Any] = {}
        if sure:
            email = f"{_typo(rng, local)}@{domain}"
            while email in self._emails:
                email = f"{_typo(rng, local)}@{domain}"
            if "birthday" in original.traits:
                traits["birthday"] = original.traits["birthday"]
        else:
            if first in _NICKNAMES:
                first = _NICKNAMES[first]
            else:
                last = _typo(rng, last)
            others = [d for d in _EMAIL_DOMAINS[original.country] if d != domain]
            email = f"{_ascii(first).lower()}{rng.randint(10, 99)}@{rng.choice(others)}"
            while email in self._emails:
                email = f"{_ascii(first).lower()}{rng.randint(100, 999)}@{rng.choice(others)}"
        self._emails.add(email)
        traits.update(firstName=first, lastName=last, name=f"{first} {last}", email=email)
        traits["address"] = _reword_address(rng, original.traits["address"])
        until = original.active_from - timedelta(days=1)
        since = max(self.start, until - timedelta(days=rng.uniform(2, 30)))
        person = _Person(
            index=index,
            persona=VISITOR,
            country=original.country,
            affinity=list(original.affinity),
            active_from=since,
            active_until=until,
            devices=[self._device(original.country)],
            traits=traits,
            newsletter=True,
            anonymous_sessions=0,
            min_sessions=1,
        )
        assert original.user_id is not None
        self.newsletter_pairs.append((original.user_id, email, "sure" if sure else "unsure"))
        return person

    def leaver_events(self) -> tuple[str, list[dict[str, Any]]]:
        """One more customer, not among ``people``: someone who shopped, then asked
        to be erased (the demo erases them). Their email, and their events. Calling
        this changes nobody else's data."""
        rng = self.rng
        persona = next(p for p in PERSONAS if p.name == "bargain_hunter")
        person = self._new_person(len(self.people), persona)
        person.user_id = self._user_id()
        person.traits = self._traits(person.country)
        person.anonymous_sessions = 1 + (rng.random() < 0.35)
        person.min_sessions = person.anonymous_sessions + 1
        orders, revenue = self.stats.orders, self.stats.revenue
        events = _PersonWriter(self, person).write()
        self.stats.orders, self.stats.revenue = orders, revenue  # theirs are erased
        events.sort(key=lambda e: e["timestamp"])
        return person.traits["email"], events

    def _build_campaigns(self) -> list[_Campaign]:
        campaigns = []
        at = self.start + timedelta(days=5, hours=9)
        n = 0
        while at < self.end:
            n += 1
            theme = _CAMPAIGN_THEMES[(n - 1) % len(_CAMPAIGN_THEMES)]
            campaigns.append(
                _Campaign(
                    campaign_id=f"cmp_{n:03d}",
                    name=f"{theme} #{n}",
                    subject=f"{theme}: picked for you",
                    sent_at=at,
                )
            )
            at += timedelta(days=self.rng.choice((10, 12, 14, 14)))
        return campaigns

    # --- events -------------------------------------------------------------------

    def people_events(self) -> Iterator[list[dict[str, Any]]]:
        """Each person's events, in time order, one person at a time."""
        for person in self.people:
            events = _PersonWriter(self, person).write()
            events.sort(key=lambda e: e["timestamp"])
            self.stats.events += len(events)
            for event in events:
                self.stats.by_event[event.get("event") or event["type"]] += 1
            yield events

    def live_events(self, now: datetime, *, visitors: int = 5) -> list[dict[str, Any]]:
        """A visit going on right now: the customers who like shoes best each look at
        three pairs within the last 40 minutes, signed in on their first device.

        What makes "currently browsing shoes" (a real-time segment over the last
        hour) show members when the demo is opened, and lose them by themselves an
        hour later. Unlike the history, these times follow ``now`` itself; their
        Random is seeded apart, so the history stays as it was.
        """
        shoes = self.categories.index("Shoes")
        fans = sorted(
            (p for p in self.people if p.user_id is not None and p.persona is not VISITOR),
            key=lambda p: (-p.affinity[shoes], p.index),
        )[:visitors]
        events: list[dict[str, Any]] = []
        for person in fans:
            writer = _PersonWriter(self, person)
            # Seeded apart from the history, and not by the time: loading the same
            # seed again (--force) sends the same messageIds, which are skipped.
            writer.rng = random.Random(f"{self.seed}:{person.index}:live")
            device = person.devices[0]
            writer.signed_in.add(device.anonymous_id)
            session = _Session(writer, device, now - timedelta(minutes=40))
            for _ in range(3):
                product = self.product_pick(writer.rng, "Shoes", person.persona.price_bias)
                session._view_product(product)
                session.clock += timedelta(minutes=writer.rng.uniform(4, 9))
            # Three views and their pages end at most about 35 minutes later: before now.
            events.extend(writer.events)
        events.sort(key=lambda e: e["timestamp"])
        return events

    def product_pick(self, rng: random.Random, category: str, bias: float) -> Product:
        products = self.by_category[category]
        weights = self._product_weights.get((category, bias))
        if weights is None:
            mean = sum(p.price for p in products) / len(products)
            weights = []
            total = 0.0
            for p in products:
                total += (p.price / mean) ** bias
                weights.append(total)
            self._product_weights[(category, bias)] = weights
        return rng.choices(products, cum_weights=weights)[0]


def _fictional_phone(rng: random.Random, country: str) -> tuple[str, str]:
    """(E.164, as the person typed it) in the ranges regulators keep for fiction."""
    if country == "GB":  # 020 7946 0000-0999
        digits = f"0{rng.randrange(1000):03d}"
        e164, spaced = f"+44207946{digits}", f"+44 20 7946 {digits}"
    elif country == "DE":  # 030 23125 xxx, 069 90009 xxx
        digits = f"{rng.randrange(1000):03d}"
        area, block = rng.choice((("30", "23125"), ("69", "90009")))
        e164, spaced = f"+49{area}{block}{digits}", f"+49 {area} {block}{digits}"
    else:  # FR: 01 99 00 xx xx
        digits = f"{rng.randrange(10000):04d}"
        e164, spaced = f"+3319900{digits}", f"+33 1 99 00 {digits[:2]} {digits[2:]}"
    return e164, e164 if rng.random() < 0.6 else spaced


def _typo(rng: random.Random, text: str) -> str:
    """A plausible slip of the keyboard: swap two neighbours, drop or double a letter."""
    if len(text) < 4:
        return text + text[-1]
    i = rng.randrange(1, len(text) - 2)
    kind = rng.randrange(3)
    if kind == 0 and text[i] != text[i + 1]:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind == 1:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i] + text[i:]


def _reword_address(rng: random.Random, address: dict[str, str]) -> dict[str, str]:
    """The same place written another way: "Street" as "St.", a unit number added."""
    street = address["street"]
    forms = [(long, short) for long, short in _STREET_ABBREVIATIONS if long in street]
    if forms and rng.random() < 0.8:
        long, short = rng.choice(forms)
        street = street.replace(long, short, 1)
    else:
        street = f"{street}, Apt {rng.randint(1, 40)}"
    result = {**address, "street": street}
    if rng.random() < 0.3:
        result["city"] = address["city"].upper()
    return result


class _PersonWriter:
    """Writes one person's sessions and email opens, with their own Random."""

    def __init__(self, gen: DemoGenerator, person: _Person) -> None:
        self.gen = gen
        self.person = person
        self.persona = person.persona
        self.rng = random.Random(f"{gen.seed}:{person.index}")
        self.events: list[dict[str, Any]] = []
        self.signed_in: set[str] = set()  # anonymousIds that carry the userId
        self.orders = 0
        self.plan = "free"
        self.opens: list[tuple[datetime, _Campaign]] = []
        # The cookie banner's answer (Segment consent spec), from its own Random so
        # that the rest of the demo stays as it was: most accept all, some refuse
        # advertising, a few refuse personalization as well.
        roll = random.Random(f"{gen.seed}:{person.index}:consent").random()
        self.consent = {
            "Analytics": True,
            "Functional": roll < 0.9,
            "Advertising": roll < 0.7,
        }

    def write(self) -> list[dict[str, Any]]:
        times = self._session_times()
        person = self.person
        signup_index = (
            min(person.anonymous_sessions, len(times) - 1)
            if person.user_id or person.newsletter
            else None
        )
        if signup_index is not None and person.user_id:
            self.opens = self._email_opens(times[signup_index])
        second_from = None
        if len(person.devices) > 1 and signup_index is not None:
            later = times[signup_index + 1 :]
            if later:
                second_from = self.rng.choice(later)
        for index, start in enumerate(times):
            device = person.devices[0]
            if (
                second_from is not None
                and start >= second_from
                and (start == second_from or self.rng.random() < 0.5)
            ):
                device = person.devices[1]
            session = _Session(self, device, start)
            session.run(signup=index == signup_index)
        return self.events

    def _session_times(self) -> list[datetime]:
        rng, person = self.rng, self.person
        span_days = (person.active_until - person.active_from).total_seconds() / 86400
        if person.persona is VISITOR:
            count = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
        else:
            count = _poisson(rng, self.persona.sessions_per_30_days * span_days / 30)
            count = min(max(count, person.min_sessions), 40)
        day0 = person.active_from.replace(hour=0, minute=0, second=0, microsecond=0)
        days = max(1, int(span_days))
        starts = sorted(
            day0
            + timedelta(
                days=rng.randrange(days + 1),
                hours=rng.choices(range(24), weights=_HOUR_WEIGHTS)[0],
                seconds=rng.randrange(3600),
            )
            for _ in range(count)
        )
        # Visits last up to about half an hour; starts at least 90 minutes apart keep
        # them from overlapping. The last one starts an hour before the window closes,
        # so nothing lies in the future.
        last_start = self.gen.end - timedelta(hours=1)
        result: list[datetime] = []
        for start in starts:
            start = max(start, self.gen.start)
            if result and start < result[-1] + timedelta(minutes=90):
                start = result[-1] + timedelta(minutes=rng.randint(90, 600))
            if start >= last_start:
                break
            result.append(start)
        while len(result) < min(person.min_sessions, count):  # squeezed out at the end
            result.insert(
                0, (result[0] if result else last_start) - timedelta(hours=rng.randint(3, 48))
            )
        return result

    def _email_opens(self, signed_up: datetime) -> list[tuple[datetime, _Campaign]]:
        rng, persona = self.rng, self.persona
        opens = []
        for campaign in self.gen.campaigns:
            if campaign.sent_at <= signed_up + timedelta(days=1):
                continue
            rate = persona.email_open_rate
            if campaign.sent_at > self.person.active_until:
                rate *= 0.1  # lapsed: the newsletter mostly goes unread
            if rng.random() < rate:
                at = campaign.sent_at + timedelta(minutes=rng.expovariate(1 / 240))
                if at < self.gen.end - timedelta(minutes=5):
                    opens.append((at, campaign))
        for at, campaign in opens:
            self.emit(
                {
                    "type": "track",
                    "event": "Email Opened",
                    "userId": self.person.user_id,
                    "properties": {
                        "email_id": f"eml_{rng.getrandbits(48):012x}",
                        "email_subject": campaign.subject,
                        "campaign_id": campaign.campaign_id,
                        "campaign_name": campaign.name,
                    },
                    "context": {"library": {"name": "email-source", "version": "1.0"}},
                },
                at,
            )
        return opens

    def emit(self, event: dict[str, Any], at: datetime) -> None:
        event["timestamp"] = _iso(at)
        event["messageId"] = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.events.append(event)


class _Session:
    """One visit on one device: pages and e-commerce events a few seconds apart."""

    def __init__(self, writer: _PersonWriter, device: _Device, start: datetime) -> None:
        self.w = writer
        self.gen = writer.gen
        self.rng = writer.rng
        self.persona = writer.persona
        self.device = device
        self.clock = start
        self.session_id = f"{self.rng.getrandbits(64):016x}"
        self.page: dict[str, Any] = {}
        self.referrer, self.campaign = self._channel(start)
        self.cart: list[tuple[Product, int]] = []
        self.cart_id = ""
        self.last_category = ""

    # --- building blocks ------------------------------------------------------------

    @property
    def user_id(self) -> str | None:
        return self.w.person.user_id if self.device.anonymous_id in self.w.signed_in else None

    def _emit(self, event: dict[str, Any]) -> None:
        self.clock += timedelta(seconds=self.rng.uniform(3, 70))
        event["anonymousId"] = self.device.anonymous_id
        if self.user_id and "userId" not in event:
            event["userId"] = self.user_id
        context: dict[str, Any] = {
            "consent": {"categoryPreferences": self.w.consent},
            "session_id": self.session_id,
            "userAgent": self.device.user_agent,
            "locale": self.device.locale,
            "timezone": self.device.timezone,
            "library": LIBRARY,
            "page": self.page,
        }
        if self.campaign:
            context["campaign"] = self.campaign
        event["context"] = context
        self.w.emit(event, self.clock)

    def view_page(self, name: str, path: str, title: str, **extra: Any) -> None:
        search = extra.pop("search", "")
        if not self.page and self.campaign:  # the landing URL carries the UTM tags
            tags = "&".join(f"utm_{k}={quote_plus(v)}" for k, v in self.campaign.items())
            search = f"{search}&{tags}" if search else f"?{tags}"
        referrer = self.page.get("url", self.referrer)
        self.page = {
            "path": path,
            "referrer": referrer,
            "search": search,
            "title": f"{title} | {SHOP_NAME}",
            "url": f"{SITE}{path}{search}",
        }
        self._emit(
            {"type": "page", "name": name, "properties": {"name": name, **self.page, **extra}}
        )

    def track(self, event: str, properties: dict[str, Any]) -> None:
        self._emit({"type": "track", "event": event, "properties": properties})

    def _channel(self, start: datetime) -> tuple[str, dict[str, str] | None]:
        rng = self.rng
        signed_up = self.device.anonymous_id in self.w.signed_in
        recent = [c for at, c in self.w.opens if timedelta(0) < start - at < timedelta(days=2)]
        if signed_up and recent and rng.random() < 0.6:
            c = recent[-1]
            return "", {
                "source": "newsletter",
                "medium": "email",
                "name": _slug(c.name),
                "content": c.campaign_id,
            }
        roll = rng.random()
        if roll < 0.35:
            return "", None
        if roll < 0.60:
            return rng.choice(
                ("https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/")
            ), None
        if roll < 0.78:
            term = rng.choice(self.gen.catalogue).kind.lower()
            return "https://www.google.com/", {
                "source": "google",
                "medium": "cpc",
                "name": rng.choice(_AD_CAMPAIGNS),
                "term": term,
            }
        if roll < 0.92:
            network = rng.choice(("instagram", "facebook", "tiktok", "pinterest"))
            return f"https://www.{network}.com/", {
                "source": network,
                "medium": "paid_social",
                "name": rng.choice(_AD_CAMPAIGNS),
                "content": f"ad_{rng.randint(1, 6)}",
            }
        return rng.choice(("https://www.reddit.com/", "https://blog.example.org/gift-ideas")), None

    # --- the visit --------------------------------------------------------------------

    def run(self, *, signup: bool) -> None:
        rng, persona = self.rng, self.persona
        self._land()
        second_device_login = (
            not signup
            and self.w.person.user_id is not None
            and self.device is not self.w.person.devices[0]
            and self.device.anonymous_id not in self.w.signed_in
        )
        if not signup and rng.random() < persona.bounce_rate:
            return
        views = rng.randint(*persona.views)
        signup_at = rng.randint(0, views) if signup else -1
        login_at = rng.randint(0, views) if second_device_login else -1
        for i in range(views):
            if i == signup_at:
                self._sign_up()
            if i == login_at:
                self._log_in()
            self._look_around()
        if signup_at == views:
            self._sign_up()
        if login_at == views:
            self._log_in()
        if self.cart:
            self._cart_and_checkout()

    def _land(self) -> None:
        rng = self.rng
        if (
            self.campaign
            and self.campaign.get("medium") in ("cpc", "paid_social")
            and rng.random() < 0.6
        ):
            product = self.gen.product_pick(rng, self._category(), self.persona.price_bias)
            self._view_product(product)
        elif rng.random() < 0.25:
            self._view_list(self._category())
        else:
            self.view_page("Home", "/", "Home")

    def _category(self) -> str:
        return self.rng.choices(self.gen.categories, weights=self.w.person.affinity)[0]

    def _look_around(self) -> None:
        rng, persona = self.rng, self.persona
        category = self._category()
        roll = rng.random()
        if roll < persona.search_rate:
            self._search(category)
        elif category != self.last_category and roll < persona.search_rate + 0.25:
            self._view_list(category)
        product = self.gen.product_pick(rng, category, persona.price_bias)
        self._view_product(product)
        if rng.random() < persona.add_rate:
            self._add(product)

    def _search(self, category: str) -> None:
        rng = self.rng
        product = rng.choice(self.gen.by_category[category])
        words = product.kind.lower()
        if self.persona.price_bias < 0 and rng.random() < 0.6:
            query = rng.choice((f"{words} sale", f"cheap {words}", f"{category.lower()} deals"))
        elif rng.random() < 0.3:
            query = category.lower()
        else:
            query = words
        self.view_page(
            "Search Results", "/search", f"Search: {query}", search=f"?q={quote_plus(query)}"
        )
        self.track("Products Searched", {"query": query})

    def _view_list(self, category: str) -> None:
        slug = _slug(category)
        self.view_page("Category", f"/c/{slug}", category, category=category)
        shown = self.rng.sample(self.gen.by_category[category], k=4)
        self.track(
            "Product List Viewed",
            {
                "list_id": slug,
                "category": category,
                "products": [
                    {
                        "product_id": p.product_id,
                        "sku": p.sku,
                        "name": p.name,
                        "price": p.price,
                        "position": i + 1,
                    }
                    for i, p in enumerate(shown)
                ],
            },
        )
        self.last_category = category

    def _view_product(self, product: Product) -> None:
        self.view_page(
            "Product",
            f"/p/{product.product_id}-{_slug(product.name)}",
            product.name,
            category=product.category,
        )
        self.track("Product Viewed", {**product.properties(), "currency": CURRENCY})

    def _add(self, product: Product) -> None:
        if not self.cart_id:
            self.cart_id = f"cart_{self.rng.getrandbits(64):016x}"
        quantity = self.rng.choices(
            range(1, self.persona.max_quantity + 1), weights=[6, 2, 1][: self.persona.max_quantity]
        )[0]
        # Adding a product already in the cart raises its quantity (one order line).
        in_cart = dict(self.cart)
        in_cart[product] = in_cart.get(product, 0) + quantity
        self.cart = list(in_cart.items())
        self.track(
            "Product Added",
            {
                **product.properties(),
                "quantity": quantity,
                "cart_id": self.cart_id,
                "currency": CURRENCY,
            },
        )

    def _cart_products(self) -> list[dict[str, Any]]:
        return [{**p.properties(), "quantity": q} for p, q in self.cart]

    def _sign_up(self) -> None:
        person = self.w.person
        if person.newsletter:  # no account: the newsletter form's identify, no userId
            self.view_page("Newsletter", "/newsletter", "Get our newsletter")
            self._emit({"type": "identify", "traits": dict(person.traits)})
            return
        assert person.user_id is not None
        self.view_page("Sign Up", "/account/signup", "Create your account")
        self.w.signed_in.add(self.device.anonymous_id)
        traits = {**person.traits, "createdAt": _iso(self.clock), "plan": self.w.plan}
        self._emit({"type": "identify", "userId": person.user_id, "traits": traits})

    def _log_in(self) -> None:
        person = self.w.person
        assert person.user_id is not None
        self.view_page("Log In", "/account/login", "Log in")
        self.w.signed_in.add(self.device.anonymous_id)
        traits = {"email": person.traits["email"], "name": person.traits["name"]}
        self._emit({"type": "identify", "userId": person.user_id, "traits": traits})

    def _cart_and_checkout(self) -> None:
        rng, persona = self.rng, self.persona
        wants_checkout = self.user_id is not None and rng.random() < persona.checkout_rate
        if not wants_checkout:
            if rng.random() < 0.5:  # a look at the cart, then gone: an abandoned cart
                self.view_page("Cart", "/cart", "Your cart")
                self.track(
                    "Cart Viewed", {"cart_id": self.cart_id, "products": self._cart_products()}
                )
            return
        self.view_page("Cart", "/cart", "Your cart")
        self.track("Cart Viewed", {"cart_id": self.cart_id, "products": self._cart_products()})
        subtotal = _money(sum(p.price * q for p, q in self.cart))
        coupon = ""
        if rng.random() < persona.coupon_rate:
            coupon = (
                "WELCOME10"
                if self.w.orders == 0 and persona.name == "new"
                else rng.choice(("SAVE10", "SPRING15", "FLASH20", "FREESHIP"))
            )
        discount = _money(subtotal * COUPONS[coupon]) if coupon else 0.0
        revenue = _money(subtotal - discount)
        shipping = 0.0 if revenue >= FREE_SHIPPING_FROM or coupon == "FREESHIP" else SHIPPING
        tax = _money(revenue * TAX_RATE)
        order_id = f"ord_{rng.getrandbits(48):012x}"
        checkout_id = f"chk_{rng.getrandbits(48):012x}"
        products = self._cart_products()
        self.view_page("Checkout", "/checkout", "Checkout")
        started: dict[str, Any] = {
            "checkout_id": checkout_id,
            "order_id": order_id,
            "value": subtotal,
            "revenue": revenue,
            "currency": CURRENCY,
            "products": products,
        }
        if coupon:
            started["coupon"] = coupon
        self.track("Checkout Started", started)
        if rng.random() >= persona.purchase_rate:
            return
        completed: dict[str, Any] = {
            "checkout_id": checkout_id,
            "order_id": order_id,
            "affiliation": SHOP_NAME,
            "total": _money(revenue + shipping + tax),
            "subtotal": subtotal,
            "revenue": revenue,
            "shipping": shipping,
            "tax": tax,
            "discount": discount,
            "currency": CURRENCY,
            "products": products,
        }
        if coupon:
            completed["coupon"] = coupon
        self.track("Order Completed", completed)
        self.view_page("Order Confirmation", "/checkout/confirmation", "Thank you for your order")
        self.w.orders += 1
        self.gen.stats.orders += 1
        self.gen.stats.revenue = _money(self.gen.stats.revenue + revenue)
        self.cart, self.cart_id = [], ""
        if (
            self.persona.name == "loyal_high_spender"
            and self.w.plan == "free"
            and rng.random() < 0.4
        ):
            # Good customers join the paid membership: a later trait change to pick up.
            self.w.plan = "plus"
            self._emit(
                {"type": "identify", "userId": self.w.person.user_id, "traits": {"plan": "plus"}}
            )
