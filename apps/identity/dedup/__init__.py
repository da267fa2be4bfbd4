"""Probabilistic deduplication of profiles (Fellegi-Sunter, blocking, EM).

Finds profiles of one person that share no identifier; sure pairs are merged
through ``apps.identity.services.profile_merge``, likely ones wait for review in
the admin. See ``services.dedup_run``.
"""
