"""A person's data as a machine-readable archive (access and portability).

A zip with ``data.json`` (everything, nested by table) and one CSV per table, so
the person can read it and another service can import it. Built on demand from
what is held at that moment, never stored: a copy of a person's data on disk is
one more thing to secure and erase.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from apps.common.registry import RegistryError
from apps.consent.models import ConsentRecord
from apps.consent.registry import EXPORT_TABLE_ORDER, Provider, personal_data_providers
from apps.identity.selectors import (
    identifiers_for_export,
    merges_for_export,
    profile_get_by_external_id,
    profile_tree_ids,
    profiles_for_export,
)

README = """This archive holds the personal data {product} keeps about one person,
as of {at}.

data.json      every table below, in one JSON document
profile.csv    the profile: its traits and when it was first and last seen
identifiers.csv  the ids that identify the person (user id, email, phone...)
events.csv     every event recorded (what was done, when, with its details)
consent.csv    every consent statement, with its proof
merges.csv     profiles that were combined into this one, and why
Other CSV files come from other parts of the product (for example segments).
Nested values in CSV cells are JSON.
"""


class SubjectNotFound(LookupError):
    pass


def person_profile_ids(subject: str) -> list[uuid.UUID]:
    """The live profile a subject resolves to, and every profile merged into it."""
    profile = profile_get_by_external_id(external_id=subject, follow_merges=True)
    if profile is None:
        return []
    return profile_tree_ids(profile_id=profile.id)


def _rows_profile(ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    return profiles_for_export(profile_ids=ids)


def _rows_consent(ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    return [
        {
            "purpose": r.purpose.key,
            "status": r.status,
            "given_at": r.given_at,
            "recorded_at": r.recorded_at,
            "source": r.source,
            "method": r.method,
            "notice_version": r.notice_version,
            "notice_hash": r.notice_hash,
            "ip_hash": r.ip_hash,
            "user_agent": r.user_agent,
            "page_url": r.page_url,
            "tcf_string": r.tcf_string,
            "gcm_flags": r.gcm_flags,
        }
        for r in ConsentRecord.objects.filter(profile_id__in=ids)
        .select_related("purpose")
        .order_by("given_at", "id")
    ]


def person_data(profile_ids: Sequence[uuid.UUID]) -> dict[str, list[dict[str, Any]]]:
    """Every table of the person: consent's own, then the registered providers'
    (events, segments...), in ``EXPORT_TABLE_ORDER`` and the registry's order."""
    own: dict[str, Provider] = {
        "profile": _rows_profile,
        "identifiers": lambda ids: identifiers_for_export(profile_ids=ids),
        "consent": _rows_consent,
        "merges": lambda ids: merges_for_export(profile_ids=ids),
    }
    tables = [(EXPORT_TABLE_ORDER[name], name, fn) for name, fn in own.items()]
    for item in personal_data_providers.items():
        if item.name in own:
            raise RegistryError(f"{item.name!r} is a table of consent's own export.")
        tables.append((item.order, item.name, item.entry))
    return {name: fn(profile_ids) for _, name, fn in sorted(tables, key=lambda t: t[:2])}


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else value


def dsr_export_archive(*, subject: str) -> bytes:
    profile_ids = person_profile_ids(subject)
    if not profile_ids:
        raise SubjectNotFound("No data is held about this subject.")
    data = person_data(profile_ids)
    buffer = io.BytesIO()
    now = timezone.now()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", README.format(product="this CDP", at=now.isoformat()))
        archive.writestr(
            "data.json",
            json.dumps(
                {"exported_at": now, "tables": data},
                cls=DjangoJSONEncoder,
                ensure_ascii=False,
                indent=1,
            ),
        )
        for name, rows in data.items():
            out = io.StringIO()
            columns: list[str] = []
            for row in rows:
                columns += [c for c in row if c not in columns]
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({c: _cell(row.get(c)) for c in columns})
            archive.writestr(f"{name}.csv", out.getvalue())
    return buffer.getvalue()
