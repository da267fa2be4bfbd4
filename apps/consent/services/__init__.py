"""Consent and privacy services."""

from .consent import (
    ConsentRefused,
    consent_grant,
    consent_reassign_profile,
    consent_reassign_profiles,
    consent_record,
    consent_restore_after_split,
    consent_statements_append,
    consent_withdraw,
)
from .ingest import GateResult, consent_gate, suppressed_event_ids

__all__ = [
    "ConsentRefused",
    "GateResult",
    "consent_gate",
    "consent_grant",
    "consent_reassign_profile",
    "consent_reassign_profiles",
    "consent_record",
    "consent_restore_after_split",
    "consent_statements_append",
    "consent_withdraw",
    "suppressed_event_ids",
]
