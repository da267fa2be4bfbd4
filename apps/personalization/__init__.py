"""Personalization: which content each segment sees, decided in milliseconds.

- models.py: placements, content variants (payload.py checks their JSON), rules,
  exposures, holdout keys, publishable keys, the mapping version.
- services.py: writes to the mapping (409s as ``MappingConflict``).
- mapping.py: the per-process cache of the mapping, how it stays correct across
  processes, and the ``mapping_changed`` signal for apps above (exports).
- decide.py: the decision; holdouts.py: deterministic buckets; exposures.py: the
  buffer written in bulk; keys.py: publishable keys and their CORS origins.
- api/: ``/api/v1/placements``, ``/variants``, ``/rules``, ``/decide``.
- admin.py, admin_views.py: the marketers' content mapping page.
"""
