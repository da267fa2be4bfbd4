from __future__ import annotations

from typing import Any

ROBERT: dict[str, Any] = {
    "firstName": "Robert",
    "lastName": "Kowalski",
    "name": "Robert Kowalski",
    "email": "robert.kowalski@example.com",
    "phone": "+1 201-555-0147",
    "birthday": "1984-07-12",
    "address": {
        "street": "42 Maple Street",
        "city": "Springfield",
        "postalCode": "62704",
        "state": "IL",
        "country": "US",
    },
}


def variant(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``base`` traits: ``address__city="X"`` changes a nested trait and a
    value of None removes the trait."""
    traits = {**base, "address": dict(base.get("address", {}))}
    for key, value in changes.items():
        if key.startswith("address__"):
            target, name = traits["address"], key.removeprefix("address__")
        else:
            target, name = traits, key
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return traits
