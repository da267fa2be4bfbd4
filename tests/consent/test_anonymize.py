"""What an event keeps when it is stored without personal data."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from apps.consent.anonymize import is_personal_key, properties_anonymize
from apps.consent.models import Purpose


@pytest.mark.parametrize(
    "name",
    [
        "email",
        "E-Mail",
        "userEmail",
        "phone",
        "phone_number",
        "firstName",
        "last_name",
        "name",
        "address",
        "billingAddress",
        "street",
        "zip",
        "ip",
        "ip_address",
        "userId",
        "anonymous_id",
        "birthday",
        "latitude",
        "search",
        "billing_first_name",
        "customer_name",
        "recipientName",
    ],
)
def test_names_of_personal_data_are_recognized(name: str) -> None:
    assert is_personal_key(name) is True


@pytest.mark.parametrize(
    "name", ["product_id", "product_name", "price", "currency", "title", "path", "sku"]
)
def test_names_of_behaviour_are_kept(name: str) -> None:
    assert is_personal_key(name) is False


@pytest.mark.parametrize(
    ("properties", "allow_lists", "expected"),
    [
        ({"sku": "a", "email": "x@y.io"}, [], {"sku": "a"}),
        ({"items": [{"sku": "a", "name": "Ada"}, "ada@x.io"]}, [], {"items": [{"sku": "a"}]}),
        ({"referrer": "https://x.io/a?b=c#d"}, [], {"referrer": "https://x.io/a"}),
        ({"sku": "a", "coupon": "c"}, [("sku", "coupon"), ("sku",)], {"sku": "a"}),
        ({"sku": "a", "email": "x@y.io"}, [("email",)], {}),  # email-like values go anyway
        ({"sku": "a"}, [()], {"sku": "a"}),  # an empty list is no allow-list
    ],
)
def test_properties_anonymize(
    properties: dict[str, Any], allow_lists: list[tuple[str, ...]], expected: dict[str, Any]
) -> None:
    assert properties_anonymize(properties, allow_lists) == expected


@pytest.mark.django_db
def test_the_allow_list_is_a_list_of_names() -> None:
    purpose = Purpose(key="p", name="P", anonymized_properties={"sku": True})
    with pytest.raises(ValidationError, match="A list of property names"):
        purpose.full_clean()
