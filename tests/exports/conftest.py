"""People in segments with or without consent, destinations, and runs, built
through the services the app uses (segments' written memberships write the
outbox as every other membership change does)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.consent.models import Purpose
from apps.consent.services.consent import consent_grant
from apps.exports.files import exports_dir
from apps.exports.models import Destination, ExportRun
from apps.exports.services import destination_save, export_run_execute, export_run_start
from apps.identity.models import Profile
from apps.segments.models import Segment
from apps.segments.written import (
    WrittenMembers,
    uuids_pack,
    written_segment_create,
    written_segments_swap,
)
from tests.identity.factories import ProfileFactory


@pytest.fixture(autouse=True)
def _exports_settings(settings: Any, tmp_path: Path) -> None:
    settings.CDP = {
        **settings.CDP,
        "EXPORTS_DIR": str(tmp_path / "exports"),
        "EXPORT_WEBHOOK_RETRY_DELAYS": [0, 0],
    }


@pytest.fixture
def ads(db: None) -> Purpose:
    return Purpose.objects.create(key="ads", name="Advertising")


@pytest.fixture
def person(ads: Purpose) -> Callable[..., Profile]:
    """``person("ada", consent=True, email=..., phone=..., traits=...)``: a profile
    with user id ``ada`` (and the email and phone given)."""

    def make(
        user_id: str,
        *,
        consent: bool = True,
        email: str | None = None,
        phone: str | None = None,
        traits: dict[str, Any] | None = None,
    ) -> Profile:
        identifiers = [("user_id", user_id)]
        if email:
            identifiers.append(("email", email))
        if phone:
            identifiers.append(("phone", phone))
        profile = ProfileFactory(traits=traits or {}, identifiers=identifiers)
        if consent:
            consent_grant(profile_id=profile.pk, purpose="ads", source="test")
        return profile

    return make


def members_set(segment: Segment, profiles: Sequence[Profile]) -> None:
    """The segment's members are now exactly ``profiles`` (entries and exits in
    the outbox)."""
    ids = [p.pk for p in profiles]
    written_segments_swap(
        members=[
            WrittenMembers(
                segment_id=segment.pk,
                profile_ids=uuids_pack(ids) if ids else np.empty(0, dtype="V16"),
                distances=np.zeros(len(ids)),
                reason={"test": True},
            )
        ]
    )
    segment.refresh_from_db()


@pytest.fixture
def audience(db: None) -> Callable[..., Segment]:
    def make(key: str, profiles: Sequence[Profile], *, min_size: int = 0) -> Segment:
        segment = written_segment_create(key=key, name=key.replace("-", " ").title())
        Segment.objects.filter(pk=segment.pk).update(min_size=min_size)
        members_set(segment, profiles)
        return segment

    return make


@pytest.fixture
def destination(ads: Purpose) -> Callable[..., tuple[Destination, str]]:
    """``destination(kind, segments, settings={...}, ...)``: saved through the
    service; returns it with the secret shown once (webhooks, feeds)."""

    def make(
        kind: str, segments: Sequence[Segment] = (), *, key: str | None = None, **fields: Any
    ) -> tuple[Destination, str]:
        fields.setdefault("settings", {})
        obj = Destination(
            key=key or f"{kind.replace('_', '-')}-{uuid.uuid4().hex[:6]}",
            name=kind,
            kind=kind,
            purpose=ads,
            **fields,
        )
        saved = destination_save(destination=obj, segments=segments)
        return saved.destination, saved.secret

    return make


def run_now(destination: Destination, mode: str = "full") -> ExportRun:
    run = export_run_start(destination=destination, mode=mode)
    return export_run_execute(run.pk)


def files_of(run: ExportRun) -> dict[str, bytes]:
    root = exports_dir()
    return {f.name: (root / f.path).read_bytes() for f in run.export_files.order_by("name")}
