"""Phone normalization: E.164 via phonenumbers, whatever format a number arrives in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime

import phonenumbers
import pytest
from django.conf import settings
from django.test import override_settings
from hypothesis import assume, given
from hypothesis import strategies as st

from apps.identity.models import Identifier
from apps.identity.normalize import normalize
from apps.identity.services import IdentityClaim, identity_rules_load, profiles_resolve

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
TYPES = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
INTERNATIONAL_FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
]


def _example(region: str, kind: int) -> phonenumbers.PhoneNumber:
    number = phonenumbers.example_number_for_type(region, kind)
    assume(number is not None and phonenumbers.is_valid_number(number))
    return number


@given(
    region=st.sampled_from(REGIONS),
    kind=st.sampled_from(TYPES),
    how=st.sampled_from(INTERNATIONAL_FORMATS),
    default_region=st.sampled_from(["US", "DE", "GB", "IN", "BR"]),
    padding=st.sampled_from(["", " ", "  \t"]),
)
def test_a_number_with_its_country_code_is_e164_whatever_the_default_region(
    region: str, kind: int, how: int, default_region: str, padding: str
) -> None:
    # given a valid number of any country, written in an international format
    number = _example(region, kind)
    expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    written = padding + phonenumbers.format_number(number, how) + padding

    # when / then
    assert normalize("phone", written, phone_region=default_region) == expected


@given(region=st.sampled_from(REGIONS), kind=st.sampled_from(TYPES))
def test_a_national_number_is_read_in_the_default_region(region: str, kind: int) -> None:
    # given a valid number written as people of that country write it
    number = _example(region, kind)
    expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    # (a few countries' national form does not parse back to the same number)
    assume(phonenumbers.parse(national, region) == number)

    # when / then
    assert normalize("phone", national, phone_region=region) == expected


@given(
    value=st.text(alphabet="0123456789+-(). x", max_size=25),
    default_region=st.sampled_from(["US", "DE", "GB", "FR", "JP"]),
)
def test_any_normalized_phone_is_e164_and_normalizes_to_itself(
    value: str, default_region: str
) -> None:
    # when
    normalized = normalize("phone", value, phone_region=default_region)

    # then it is E.164 or nothing, and a second pass changes nothing
    if normalized is not None:
        assert E164.match(normalized)
        assert normalize("phone", normalized, phone_region=default_region) == normalized
        assert normalize("phone", normalized, phone_region="JP") == normalized


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("(415) 555-2671", "US", "+14155552671"),
        ("415.555.2671", "US", "+14155552671"),
        ("+1 415-555-2671", "DE", "+14155552671"),
        ("0030 21 2345 6789", "DE", "+302123456789"),
        ("030 1234567", "DE", "+49301234567"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("tel:+44-20-7946-0958", "US", "+442079460958"),
        ("415 555 267", "US", None),  # too short
        ("not a phone", "US", None),
        ("+999 123", "US", None),
    ],
)
def test_phone_formats(value: str, region: str, expected: str | None) -> None:
    assert normalize("phone", value, phone_region=region) == expected


@pytest.mark.django_db
def test_default_phone_region_setting_is_honoured() -> None:
    # given an installation in Germany
    with override_settings(CDP={**settings.CDP, "PHONE_DEFAULT_REGION": "DE"}):
        # when a German customer gives their number as Germans write it
        [pid] = profiles_resolve(
            claims=[
                IdentityClaim(
                    [("user_id", "u")],
                    datetime(2025, 3, 1, tzinfo=UTC),
                    traits={"phone": "030 1234567"},
                )
            ]
        )
        rules = identity_rules_load()

    # then it is read as a Berlin number, not a US one
    assert rules.phone_region == "DE"
    assert Identifier.objects.get(profile_id=pid, type="phone").value == "+49301234567"
    assert normalize("phone", "030 1234567", phone_region="US") is None


def test_default_phone_region_comes_from_the_environment() -> None:
    # when settings are loaded with CDP_PHONE_DEFAULT_REGION set
    env = {
        **os.environ,
        "CDP_PHONE_DEFAULT_REGION": "GB",
        "DJANGO_SETTINGS_MODULE": "cdp.settings.test",
    }
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.CDP['PHONE_DEFAULT_REGION'])",
        ],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # then
    assert out.strip() == "GB"


def test_a_number_longer_than_e164_allows_is_no_identifier() -> None:
    # phonenumbers calls this German number valid, but its E.164 form would have
    # 16 digits (hypothesis found it)
    assert normalize("phone", "20100000000000", phone_region="DE") is None
    assert normalize("phone", "+49 201 0000000", phone_region="DE") is not None
