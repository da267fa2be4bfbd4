"""What clustering plugs into the layers below: the "clustering.assign" pipeline
stage, after segments' features (10) and real-time segments (20), so that it
reads the features these very events made; and merge and split handlers that
place the profiles left live in the nearest cluster of their recomputed features
(segments' own handler moved the absorbed memberships to the survivor, which
may leave it in two clusters of one config)."""

from __future__ import annotations

from apps.events.pipeline import stages
from apps.identity.hooks import ProfilesMerged, ProfileSplit, merged, split

from . import demo  # noqa: F401  (load_demo's step: customer personas)
from .assign import clustering_assign, profiles_assign

stages.register("clustering.assign", clustering_assign, order=30)


@merged.register("clustering", order=50)
def clusters_follow_merge(event: ProfilesMerged) -> None:
    # After segments' features (30) and memberships (40).
    profiles_assign(sorted(set(event.mapping.values())))


@split.register("clustering", order=50)
def clusters_follow_split(event: ProfileSplit) -> None:
    profiles_assign([event.profile_id, event.from_profile_id])
