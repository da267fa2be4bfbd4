"""What exports plug into consent (apps/consent/registry.py): erasure passed on
to destinations that can delete (webhooks get a signed ``profile.erased``
message), mapping changes pushed to webhooks, and the erasure of our own rows
that name the person (queued and past webhook messages about her).

Vendor files have nothing to pass on: Adobe Target, Optimizely, Dynamic Yield,
Google and Meta receive whole files that the next full run replaces without
her (the erased person is in no segment any more); the files of past runs stay
on our disk until they are deleted with their runs (see the app's README part).
"""

from __future__ import annotations

from collections.abc import Sequence

from apps.consent.registry import (
    ErasedPerson,
    PersonalDataEraser,
    deletion_hooks,
    personal_data_erasers,
)
from apps.personalization.mapping import mapping_changed

from .models import WebhookDelivery
from .webhooks import webhook_erased_enqueue, webhook_mapping_enqueue


def _pass_on_erasure(identifiers: Sequence[tuple[str, str]]) -> str:
    return "ok" if webhook_erased_enqueue(identifiers) else "not_applicable"


deletion_hooks.register("exports.webhooks", _pass_on_erasure)


def _erase_deliveries(person: ErasedPerson, *, batch_size: int) -> int:
    ids = list(
        WebhookDelivery.objects.filter(profile_id__in=list(person.profile_ids)).values_list(
            "pk", flat=True
        )[:batch_size]
    )
    deleted, _ = WebhookDelivery.objects.filter(pk__in=ids).delete()
    return deleted


personal_data_erasers.register(
    "export_webhook_deliveries",
    PersonalDataEraser(erase=_erase_deliveries, step="local", meanwhile=True),
)


def _mapping_changed(sender: object, **change: object) -> None:
    # Sent by personalization after the change has committed (apps/
    # personalization/mapping.py): no personal data, just what changed.
    webhook_mapping_enqueue(
        kind=str(change.get("kind")),
        key=str(change.get("key")),
        action=str(change.get("action")),
        version=change.get("version"),
    )


mapping_changed.connect(_mapping_changed, dispatch_uid="exports.webhooks.mapping")
