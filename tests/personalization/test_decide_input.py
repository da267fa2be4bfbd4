"""The decision API's plain-input reader (``decide_input_plain``) against the
serializer it stands in for (``DecideInputSerializer``): wherever the plain reader
answers, the serializer accepts the same input and validates it to the same
data; the usual requests take the plain path; everything else is left to the
serializer, which words the 400."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.personalization.api.serializers import DecideInputSerializer, decide_input_plain

KEY_CHARS = "abcXYZ019-_"
keys = st.text(alphabet=KEY_CHARS, min_size=1, max_size=100)
odd_text = st.one_of(
    st.text(max_size=8),  # unicode, control characters, NUL, empty
    st.sampled_from(["", " ", "p01\n", "p 01", "é", "\ud800", "\x00", "a" * 101, "A" * 64]),
    keys.map(lambda k: k + "\n"),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
hex_hash = st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64)

profiles = st.one_of(
    st.builds(lambda k, v: f"{k}:{v}", st.sampled_from(["user_id", "anonymous_id", "email"]), keys),
    odd_text,
    json_values,
)
placement_lists = st.one_of(
    st.lists(keys, min_size=1, max_size=50),
    st.lists(st.one_of(keys, odd_text, json_values), max_size=52),
    json_values,
)
user_hashes = st.one_of(hex_hash, odd_text, hex_hash.map(lambda h: h + "0"), json_values)
contexts = st.one_of(st.dictionaries(st.text(max_size=5), json_values, max_size=4), json_values)
bodies = st.one_of(
    st.fixed_dictionaries(
        {"profile": profiles, "placements": placement_lists},
        optional={"user_hash": user_hashes, "context": contexts, "extra": json_values},
    ),
    json_values,
)


def _serializer(data: Any) -> dict[str, Any] | None:
    s = DecideInputSerializer(data=data)
    return dict(s.validated_data) if s.is_valid() else None


@settings(max_examples=600, deadline=None)
@given(data=bodies)
def test_the_plain_reader_agrees_with_the_serializer_wherever_it_answers(data: Any) -> None:
    plain = decide_input_plain(data)
    if plain is not None:
        assert _serializer(data) == plain


@settings(max_examples=200, deadline=None)
@given(
    profile=st.builds(lambda v: f"user_id:{v}", keys),
    placements=st.lists(keys, min_size=1, max_size=50),
    user_hash=st.one_of(st.none(), hex_hash),
    context=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), json_values, max_size=4)),
)
def test_usual_requests_take_the_plain_path(
    profile: str, placements: list[str], user_hash: str | None, context: dict[str, Any] | None
) -> None:
    # given a request as sites send it: ASCII ids and keys, optional hash and context
    data: dict[str, Any] = {"profile": profile, "placements": placements}
    if user_hash is not None:
        data["user_hash"] = user_hash
    if context is not None:
        data["context"] = context
    # then the plain reader answers, with what the serializer makes of it
    plain = decide_input_plain(data)
    assert plain is not None
    assert plain == _serializer(data)


def test_what_is_not_plainly_valid_is_left_to_the_serializer() -> None:
    for data in (
        [],
        {"placements": ["a"]},
        {"profile": "user_id:1", "placements": []},
        {"profile": "user_id:1", "placements": ["a"] * 51},
        {"profile": "user_id:1", "placements": ["bad key"]},
        {"profile": "user_id:1", "placements": ["a"], "user_hash": None},
        {"profile": "user_id:1", "placements": ["a"], "context": None},
        {"profile": "", "placements": ["a"]},
        {"profile": "user_id:é", "placements": ["a"]},  # valid, but not ASCII
    ):
        assert decide_input_plain(data) is None
    assert _serializer({"profile": "user_id:é", "placements": ["a"]}) is not None
