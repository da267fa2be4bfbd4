"""Identity services: resolution, merge and split, and the rules they follow."""

from .erase import person_erase
from .merge import MergeRefused, merge_blockers, profile_merge, profile_split
from .resolve import IdentityClaim, claim_keys, profiles_resolve
from .rules import IdentityRules, identity_rules_load

__all__ = [
    "IdentityClaim",
    "IdentityRules",
    "MergeRefused",
    "claim_keys",
    "identity_rules_load",
    "merge_blockers",
    "person_erase",
    "profile_merge",
    "profile_split",
    "profiles_resolve",
]
