"""What clustering plugs into the layers below: the "clustering.assign" pipeline
stage (after segments' features, 10, and real-time segments, 20)."""

from __future__ import annotations
