"""The OpenAPI document as a whole: names, description, error answers."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.django_db


def test_enum_components_have_names_not_hashes(openapi: Any) -> None:
    names = list(openapi.document["components"]["schemas"])
    assert [n for n in names if re.fullmatch(r".*[0-9a-f]{3}Enum", n)] == []
    assert {"ConsentStatusEnum", "PrivacyRequestStatusEnum", "PrivacyRequestTypeEnum"} <= set(names)


def test_description_says_consent_is_there_and_what_is_to_come(openapi: Any) -> None:
    description = openapi.document["info"]["description"]
    assert description.startswith(
        "Profiles, their events and consent, and data-subject requests (segments and "
        "content decisions come in later versions)."
    )


def test_every_operation_documents_its_errors_as_the_error_body(openapi: Any) -> None:
    error = {"$ref": "#/components/schemas/Error"}
    for path, methods in openapi.document["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            # every operation needs a token and a permission
            assert {"401", "403"} <= set(responses), (method, path)
            if "requestBody" in operation or "{" in path:
                assert {"400", "404"} & set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == error


def test_an_address_no_route_matches_is_a_json_404(api_client: Any) -> None:
    response = api_client.get("/api/v1/privacy-requests/not-a-uuid")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
