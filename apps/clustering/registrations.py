"""What clustering plugs into the layers below: the "clustering.assign" pipeline
stage, after segments' features (10) and real-time segments (20), so that it
reads the features these very events made."""

from __future__ import annotations

from apps.events.pipeline import stages

from .assign import clustering_assign

stages.register("clustering.assign", clustering_assign, order=30)
