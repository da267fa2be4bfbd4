"""Identity services: resolution, merge and split, and the rules they follow."""

from .erase import person_erase
from .merge import (
    MergeOutcome,
    MergeRefused,
    MergeRequest,
    merge_blockers,
    profile_merge,
    profile_merge_bulk,
    profile_seen_extend,
    profile_split,
    profiles_lock_live,
)
from .rectify import profile_traits_rectify
from .resolve import IdentityClaim, claim_keys, profiles_resolve
from .rules import IdentityRules, identity_rules_load

__all__ = [
    "IdentityClaim",
    "IdentityRules",
    "MergeOutcome",
    "MergeRefused",
    "MergeRequest",
    "claim_keys",
    "identity_rules_load",
    "merge_blockers",
    "person_erase",
    "profile_merge",
    "profile_merge_bulk",
    "profile_seen_extend",
    "profile_split",
    "profile_traits_rectify",
    "profiles_lock_live",
    "profiles_resolve",
]
