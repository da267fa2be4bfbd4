"""Quickstart settings: embedded SQLite and eager Celery unless the env says otherwise."""

import os

os.environ.setdefault("SECRET_KEY", "insecure-local-only-key-change-me")
os.environ.setdefault("DEBUG", "true")

from .base import *  # noqa: F403
