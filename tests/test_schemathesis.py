"""The management API answers as its OpenAPI schema says, under Schemathesis.

`schemathesis run --checks all` against a live server: every operation of
/api/schema/ in the examples, coverage, fuzzing and stateful phases (links are
inferred), with every check (server errors, status codes, content types,
response schemas and headers, valid data accepted and invalid data refused, auth
enforced, 405s with Allow, use after delete...). Generation is deterministic and
bounded (MAX_EXAMPLES per operation in fuzzing), so each run sends the same
requests (one worker: two would interleave destructive operations and draw
differently from run to run); about 105 seconds on two cores.

The database holds a source, people with events and identifiers (one merged
into another), consent purposes and statements, and data-subject requests in
several states. Path parameters are drawn from those ids as well as generated,
so the operations reach real profiles and requests, not only 404s; the token is
a full-access one with the force-merge permission, so nothing stops at a 403.
Operations share one database: a merge or an erasure changes what later ones see.

What the schema can only say in words, the generator is told (each at its hook):
date-times are drawn from 25 May 2018 to yesterday (nothing may be dated in the
future); a cursor is one the server handed out; a request's subject is one that
can name somebody (a phone number the numbering plan knows); and no text holds NUL.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import schemathesis
from click.testing import CliRunner
from django.test import Client
from hypothesis import strategies as st
from schemathesis.cli import schemathesis as schemathesis_cli

# Imported by a check on first use, in a worker thread: pytest's assertion
# rewriting of two such imports at once fails, so they are imported here first.
from schemathesis.specs.openapi import (
    object_authorization,  # noqa: F401
    validation,  # noqa: F401
)
from schemathesis.specs.openapi.adapter import security  # noqa: F401

from apps.api_auth.services import api_token_create, service_user_ensure
from apps.consent.models import CategoryMapping, LegalBasis, Purpose
from apps.consent.selectors import consent_config_clear
from apps.events.models import Source
from apps.identity.api.schema import UUID_PATTERN, external_id_is_valid
from tests.events.factories import SourceFactory

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
# Per operation: the fuzzing phase draws this many requests (the examples and
# coverage phases add their own, a few dozen each).
MAX_EXAMPLES = 15
WRITE_KEY = "wk_schemathesis"


def _at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def _ingest(source: Source, events: list[dict[str, Any]]) -> None:
    """Through the ingestion API, as clients send them (processed at commit)."""
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    response = Client().post(
        "/v1/batch",
        data=orjson.dumps({"batch": events}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {auth}",
    )
    assert response.status_code == 200, response.content


def _people(source: Source) -> None:
    _ingest(
        source,
        [
            # No originalTimestamp or sentAt: both are null in the answer.
            {"type": "page", "anonymousId": "anon-1", "name": "Home", "timestamp": _at(0)},
            {
                "type": "identify",
                "userId": "u-1",
                "anonymousId": "anon-1",
                "traits": {"email": "Ada@Example.com", "phone": "(415) 555-2671", "name": "Ada"},
                "timestamp": _at(1),
                "sentAt": _at(1),
                "originalTimestamp": _at(1),
            },
            {
                "type": "track",
                "userId": "u-1",
                "event": "Order Completed",
                "properties": {"total": 42.5, "currency": "EUR"},
                "timestamp": _at(2),
            },
            {"type": "group", "userId": "u-1", "groupId": "acme", "timestamp": _at(3)},
            {"type": "alias", "userId": "u-1", "previousId": "anon-old", "timestamp": _at(4)},
            {
                "type": "identify",
                "userId": "u-2",
                "traits": {"email": "grace@example.com", "name": "Grace"},
                "timestamp": _at(5),
            },
            {"type": "screen", "userId": "u-2", "name": "Settings", "timestamp": _at(6)},
            {"type": "identify", "userId": "u-3", "traits": {"name": "Alan"}, "timestamp": _at(7)},
            {"type": "identify", "anonymousId": "anon-3", "timestamp": _at(8)},
        ],
    )


def _purposes() -> None:
    analytics = Purpose.objects.create(
        key="analytics",
        name="Analytics",
        legal_basis=LegalBasis.CONSENT,
        gates_storage=True,
        storage_policy="anonymize",
        notice_version="v3",
        notice_text="We measure how you use the site.",
    )
    CategoryMapping.objects.create(category="Analytics", purpose=analytics)
    Purpose.objects.create(key="newsletter", name="Newsletter", notice_version="2026-01")
    Purpose.objects.create(
        key="service", name="Service", legal_basis=LegalBasis.CONTRACT, required=True
    )
    consent_config_clear()


def _cursors() -> dict[str, list[str]]:
    """Per list operation: the cursor of a second page and back to the first."""
    user = service_user_ensure(name="schemathesis-pages", read_only=True)
    _, token = api_token_create(name="schemathesis-pages", user=user)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    cursors = {}
    for path, first in [
        ("/api/v1/profiles/", "/api/v1/profiles/?limit=1"),
        ("/api/v1/profiles/{external_id}/events/", "/api/v1/profiles/user_id:u-1/events/?limit=1"),
        ("/api/v1/segments/{key}/members/", "/api/v1/segments/everyone/members/?limit=1"),
    ]:
        second = client.get(first).json()
        back = client.get(second["next"]).json()
        cursors[path] = [
            parse_qs(urlsplit(link).query)["cursor"][0]
            for link in (second["next"], back["previous"])
        ]
    return cursors


@pytest.fixture
def cdp_data(live_server: Any) -> Iterator[dict[str, Any]]:
    """Ids the generated requests pick from, by path parameter name."""
    from apps.consent.services import consent_record
    from apps.consent.services.dsr import dsr_create, dsr_transition
    from apps.identity.models import Profile, ProfileMerge
    from apps.identity.services import profile_merge

    consent_config_clear()
    source = SourceFactory(name="Web", write_key=WRITE_KEY)
    _people(source)
    _purposes()
    ada = Profile.objects.get(identifiers__type="user_id", identifiers__value="u-1")
    grace = Profile.objects.get(identifiers__type="user_id", identifiers__value="u-2")
    alan = Profile.objects.get(identifiers__type="user_id", identifiers__value="u-3")
    anon = Profile.objects.get(identifiers__type="anonymous_id", identifiers__value="anon-3")
    # Alan and an anonymous visitor turned out to be one: a merge to split.
    profile_merge(profile_ids=(alan.id, anon.id), reason=ProfileMerge.Reason.ADMIN, details={})
    from apps.consent.selectors import purpose_rule

    consent_record(
        profile_id=ada.id, purpose=purpose_rule("newsletter"), status="granted", source="api"
    )
    consent_record(
        profile_id=grace.id, purpose=purpose_rule("analytics"), status="denied", source="api"
    )
    from apps.segments.memberships import segment_save

    # A segment of every live profile: members to page through.
    everyone = {"type": "not", "child": {"type": "trait", "path": "no_such_trait", "op": "exists"}}
    segment_save(key="everyone", name="Everyone", condition=everyone)
    _mapping()
    requests = []
    for kind, subject, status in [
        ("access", "email:ada@example.com", "verified"),
        ("portability", "user_id:u-1", "in_progress"),
        ("rectification", "user_id:u-2", "received"),
        ("objection", "email:grace@example.com", "verified"),
        ("erasure", "user_id:u-3", "verified"),
        ("access", "user_id:nobody", "rejected"),
    ]:
        dsr = dsr_create(type=kind, subject=subject)
        if status in ("verified", "in_progress"):
            dsr = dsr_transition(request=dsr, status="verified")
        if status == "in_progress":
            dsr = dsr_transition(request=dsr, status="in_progress")
        if status == "rejected":
            dsr = dsr_transition(request=dsr, status="rejected", note="Not a customer.")
        requests.append(str(dsr.id))
    yield {
        "external_id": [
            "user_id:u-1",
            "email:ada@example.com",
            "phone:+14155552671",
            "anonymous_id:anon-1",
            f"id:{grace.id}",
            "user_id:u-3",
            f"id:{anon.id}",
            "email:new-person@example.com",
        ],
        "id": requests,
        "key": ["everyone", "home_hero", "hero-shoes"],
        "cursor": _cursors(),
    }
    consent_config_clear()


@pytest.fixture
def known_ids(cdp_data: dict[str, Any]) -> Iterator[None]:
    """Path parameters as generated, or the ids of the people and requests in the
    database (a global hook: the CLI reads only those; removed after the test).

    Only a value that is valid as generated is swapped for an id, so a case meant
    to be invalid stays invalid."""

    def valid(name: str, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        if name == "id":
            return re.fullmatch(UUID_PATTERN, value) is not None
        if name == "key":
            return re.fullmatch(r"[A-Za-z0-9_-]{1,100}", value) is not None
        return external_id_is_valid(value, where="path")

    def flatmap_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> Any:
        names = [n for n in path_parameters or {} if n in cdp_data]
        if not names or not all(valid(n, path_parameters[n]) for n in names):  # type: ignore[index]
            return st.just(path_parameters)
        known = st.fixed_dictionaries({n: st.sampled_from(cdp_data[n]) for n in names})
        return st.one_of(
            st.just(path_parameters), known.map(lambda ids: {**path_parameters, **ids})
        )

    def flatmap_query(ctx: Any, query: dict[str, Any] | None) -> Any:
        # A cursor is the server's own: any other string is refused (a 400), which
        # JSON Schema cannot say of an opaque token. Real ones, from a first page.
        cursors = cdp_data["cursor"].get(ctx.operation.path) if ctx.operation else None
        if not query or not isinstance(query.get("cursor"), str) or not cursors:
            return st.just(query)
        return st.sampled_from(cursors).map(lambda cursor: {**query, "cursor": cursor})

    def before_call(ctx: Any, case: Any, kwargs: Any) -> None:
        # A subject of the schema's shape that still names nobody (a phone number
        # the numbering plan does not know, a placeholder such as "null") is a 400
        # the schema can only say in words: such a subject is sent as a usable one.
        # (A hook on the case, as the coverage phase applies no generation hooks.)
        from apps.consent.services.dsr import RequestRefused, dsr_subject_clean

        body = case.body
        if not isinstance(body, dict):
            return
        if case.operation.label.split(" ")[1].startswith("/api/v1/segments"):
            _segment_body_usable(case, body)
            return
        if case.operation.label.split(" ")[1].startswith("/api/v1/clustering"):
            _clustering_body_usable(case, body)
            return
        if case.operation.label.split(" ")[1].startswith(MAPPING_PATHS):
            _mapping_body_usable(case, body)
            return
        if case.operation.label != "POST /api/v1/privacy-requests":
            return
        subject = body.get("subject")
        if not isinstance(subject, str):
            return
        # As generated, and as the server reads it (JSON joins a surrogate pair
        # into one character): of the schema's shape in either form, yet naming
        # nobody in the form the server sees.
        seen = json.loads(json.dumps(subject))
        # A case generated to fit the schema fits it by Schemathesis's reading of
        # the pattern (ECMA regex over UTF-16), which for some characters is not
        # Python's: such a case is positive whatever our check says of it.
        meta = getattr(case, "meta", None)
        positive = getattr(getattr(meta, "generation", None), "mode", None) == "positive"
        if not (
            positive
            or external_id_is_valid(subject, where="usable")
            or external_id_is_valid(seen, where="usable")
        ):
            return
        try:
            dsr_subject_clean(seen)
        except (RequestRefused, ValueError):
            case.body = {**body, "subject": "phone:+14155552671"}

    hooks = [
        schemathesis.hook(flatmap_path_parameters),
        schemathesis.hook(flatmap_query),
        schemathesis.hook(before_call),
    ]
    yield
    for hook in hooks:
        schemathesis.hooks.GLOBAL_HOOK_DISPATCHER.unregister(hook)


USABLE_CONDITION = {"type": "trait", "path": "address.country", "op": "equals", "value": "DE"}


def _segment_body_usable(case: Any, body: dict[str, Any]) -> None:
    """A condition of the schema's shape is usable only if it names features,
    purposes and segments that exist and forms no cycle, and a segment's key does
    not change: rules of the database the schema says in words. A condition the
    server would refuse is sent as a usable one (invalid ones are tested in
    tests/segments), and a PATCH names no other key."""
    from apps.segments.conditions import condition_errors
    from apps.segments.memberships import segment_lookups

    condition = body.get("condition")
    if isinstance(condition, dict) and condition_errors(condition, segment_lookups()):
        case.body = body = {**body, "condition": USABLE_CONDITION}
    if case.operation.method.upper() == "PATCH" and "key" in body:
        case.body = {k: v for k, v in body.items() if k != "key"}


MAPPING_PATHS = ("/api/v1/placements", "/api/v1/variants", "/api/v1/rules", "/api/v1/decide")
USABLE_URL = "https://cdn.example.com/a.jpg"


def _mapping() -> None:
    """A placement with a default and a second variant, and a rule showing it to
    everyone (apps/personalization)."""
    from apps.personalization import services
    from apps.segments.models import Segment

    hero = services.placement_create(
        key="home_hero",
        name="Home hero",
        default_variant={"key": "hero-default", "name": "Default", "payload": {"headline": "Hi"}},
    )
    shoes = services.variant_create(
        placement=hero, key="hero-shoes", name="Shoes", payload={"headline": "Shoes"}
    )
    services.rule_create(placement=hero, segment=Segment.objects.get(key="everyone"), variant=shoes)


def _a_segment_key() -> str:
    from apps.segments.memberships import segment_save
    from apps.segments.models import Segment

    key = Segment.objects.order_by("id").values_list("key", flat=True).first()
    if key is None:  # every one deleted by the scenarios so far: one again
        everyone = {
            "type": "not",
            "child": {"type": "trait", "path": "no_such_trait", "op": "exists"},
        }
        key = segment_save(key="everyone", name="Everyone", condition=everyone).key
    return key


def _payload_usable(payload: Any) -> Any:
    from apps.personalization.payload import URL_KEYS, payload_errors

    if not isinstance(payload, dict):
        return payload
    # "format: uri" takes any scheme; a variant's links are http(s) (a javascript:
    # URL in a banner is refused): the schema says it in words.
    fixed = {
        k: USABLE_URL if k in URL_KEYS and k in payload_errors(payload) else v
        for k, v in payload.items()
    }
    return fixed


def _mapping_body_usable(case: Any, body: dict[str, Any]) -> None:
    """Placements, variants and rules name rows that exist (a rule's variant one of
    its placement's), and a rule's window ends after it starts; a default variant
    set with PATCH is one of the placement's own: rules of the database the schema
    says in words (refusals are tested in tests/personalization)."""
    from apps.personalization.models import ContentVariant, Placement, Rule
    from apps.segments.models import Segment

    method = case.operation.method.upper()
    path = case.operation.path
    body = dict(body)
    rule = None
    if path.startswith("/api/v1/rules/") and method == "PATCH":
        rule_id = str((case.path_parameters or {}).get("id"))
        if rule_id.isascii() and rule_id.isdigit() and 0 < int(rule_id) < 2**63:
            rule = Rule.objects.filter(pk=int(rule_id)).first()
    if path.startswith("/api/v1/rules"):
        placement = rule.placement if rule else Placement.objects.filter(key="home_hero").first()
        if placement is None:
            return
        if isinstance(body.get("placement"), str):
            body["placement"] = placement.key
        if (
            isinstance(body.get("segment"), str)
            and not Segment.objects.filter(key=body["segment"]).exists()
        ):
            # Any segment there is: a stateful scenario may have deleted "everyone".
            body["segment"] = _a_segment_key()
        own = ContentVariant.objects.filter(placement=placement).order_by("id").first()
        if (
            isinstance(body.get("variant"), str)
            and own is not None
            and not (
                ContentVariant.objects.filter(key=body["variant"], placement=placement).exists()
            )
        ):
            body["variant"] = own.key
        starts = body.get(
            "starts_at", rule.starts_at.isoformat() if rule and rule.starts_at else None
        )
        ends = body.get("ends_at", rule.ends_at.isoformat() if rule and rule.ends_at else None)
        if isinstance(starts, str) and isinstance(ends, str):
            try:
                bad = datetime.fromisoformat(ends) <= datetime.fromisoformat(starts)
            except ValueError:
                bad = False
            if bad:
                body["ends_at"] = None
    elif path.startswith("/api/v1/variants"):
        if "payload" in body:
            body["payload"] = _payload_usable(body["payload"])
        if (
            isinstance(body.get("placement"), str)
            and not Placement.objects.filter(key=body["placement"]).exists()
        ):
            body["placement"] = "home_hero"
    elif path.startswith("/api/v1/placements"):
        default = body.get("default_variant")
        if isinstance(default, dict) and "payload" in default:
            body["default_variant"] = {**default, "payload": _payload_usable(default["payload"])}
        if method == "PATCH" and isinstance(default, str):
            placement = Placement.objects.filter(
                key=(case.path_parameters or {}).get("key")
            ).first()
            mine = placement.variants.order_by("id").first() if placement else None
            body["default_variant"] = mine.key if mine is not None else None
    case.body = body


USABLE_SCHEDULE = "0 3 * * *"


def _clustering_body_usable(case: Any, body: dict[str, Any]) -> None:
    """A clustering config names each feature once, has k_max at least k_min (with
    the config's own value where a PATCH names one of them), a population segment
    that exists and a schedule that is a cron line; a PATCH names no other key:
    rules the schema says in words (refusals are tested in tests/clustering)."""
    from apps.clustering.models import ClusteringConfig
    from apps.clustering.services import cron_problem
    from apps.segments.models import Segment

    body = dict(body)
    features = body.get("features")
    if isinstance(features, list):
        seen: set[Any] = set()
        once = []
        for item in features:
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str):
                if name in seen:
                    continue
                seen.add(name)
            once.append(item)
        body["features"] = once
    config = None
    if case.operation.method.upper() == "PATCH":
        key = (case.path_parameters or {}).get("key")
        config = ClusteringConfig.objects.filter(key=key).first()
        if "key" in body:
            del body["key"]
    k_min = body.get("k_min", config.k_min if config else 2)
    k_max = body.get("k_max", config.k_max if config else 8)
    if isinstance(k_min, int) and isinstance(k_max, int) and k_min > k_max:
        if "k_max" in body:
            body["k_max"] = k_min
        else:
            body["k_min"] = k_max
    segment = body.get("population_segment")
    if isinstance(segment, str) and not Segment.objects.filter(key=segment).exists():
        body["population_segment"] = None
    schedule = body.get("schedule")
    if isinstance(schedule, str) and cron_problem(schedule):
        body["schedule"] = USABLE_SCHEDULE
    case.body = body


@pytest.fixture
def past_date_times() -> Iterator[None]:
    """Date-times between 25 May 2018 and now. A statement given, or a request
    received, in the future (or a request before the GDPR) is refused, and JSON
    Schema cannot bound a date-time by today: the schema says it in words."""
    from schemathesis.specs.openapi.formats import unregister_string_format

    today = datetime.now(UTC).replace(tzinfo=None)
    earliest = datetime(2018, 5, 26)  # noqa: DTZ001 (st.datetimes takes naive bounds)
    times = st.datetimes(min_value=earliest, max_value=today - timedelta(days=1))
    schemathesis.openapi.format("date-time", times.map(lambda at: f"{at.isoformat()}Z"))
    yield
    unregister_string_format("date-time")


def test_api_answers_as_its_schema_says(
    live_server: Any, known_ids: None, past_date_times: None, tmp_path: Any
) -> None:
    user = service_user_ensure(name="schemathesis", read_only=False, force_merge=True)
    _, token = api_token_create(name="schemathesis", user=user)
    # Its own configuration, not a schemathesis.toml found in the tree; no cache
    # of earlier runs (.schemathesis/), so each run is the same.
    config = tmp_path / "schemathesis.toml"
    config.write_text("[cache]\nenabled = false\n")
    result = CliRunner().invoke(
        schemathesis_cli,
        [
            f"--config-file={config}",
            "run",
            f"{live_server.url}/api/schema/",
            "--checks=all",
            f"--header=Authorization: Bearer {token}",
            f"--max-examples={MAX_EXAMPLES}",
            "--generation-deterministic",
            # NUL is refused in any text (PostgreSQL cannot store it), which the
            # schema's free-form objects (traits, gcm_flags) do not say.
            "--generation-allow-x00=false",
            "--workers=1",
            "--no-color",
        ],
    )
    assert result.exit_code == 0, result.output
