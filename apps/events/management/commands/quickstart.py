"""Prepare a local install for a first look: demo data, an admin login, keys."""

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from apps.api_auth.services import api_token_create
from apps.events.auth import source_create, source_write_key_rotate
from apps.events.management.commands.load_demo import DEMO_SOURCE_NAME
from apps.events.models import Source, write_key_hash


class Command(BaseCommand):
    help = "Load demo data (once), ensure an admin login and print how to use them."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--customers", type=int, default=2000)
        parser.add_argument("--skip-demo", action="store_true")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        source = Source.objects.filter(name=DEMO_SOURCE_NAME).first()
        write_key = "(run: python manage.py create_source NAME)"
        if source is not None or not options["skip_demo"]:
            write_key = self._demo_write_key(source)
        if not options["skip_demo"]:
            call_command("load_demo", customers=options["customers"])
        password_file = Path(settings.BASE_DIR) / "var" / "quickstart-admin.txt"
        user_model = get_user_model()
        user = user_model.objects.filter(username="admin").first()
        if user is None or not password_file.exists():
            password = secrets.token_urlsafe(12)
            if user is None:
                user = user_model.objects.create_superuser("admin", "admin@example.com", password)
            else:
                user.set_password(password)
                user.save()
            password_file.parent.mkdir(exist_ok=True)
            password_file.write_text(password)
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
        _, token = api_token_create(name="quickstart", user=user, expires_in_days=30)
        url = options["base_url"].rstrip("/")
        self.stdout.write(
            self.style.SUCCESS("\nCDP is ready.\n")
            + f"  Admin:      {url}/admin/  login admin / {password}\n"
            + f"  API docs:   {url}/api/docs/\n"
            + f"  Write key:  {write_key}   (POST events to {url}/v1/...)\n"
            + f"  API token:  {token}   (Authorization: Bearer ..., valid 30 days)\n"
        )

    def _demo_write_key(self, source: Source | None) -> str:
        """The demo source's write key, kept for later runs in a file only this user
        may read: the database keeps only its digest. Made (or, when the file is
        gone or holds another key, rotated) here."""
        key_file = Path(settings.BASE_DIR) / "var" / "quickstart-write-key.txt"
        kept = key_file.read_text().strip() if key_file.exists() else ""
        if source is not None and kept and write_key_hash(kept) == source.write_key_hash:
            return kept
        if source is None:
            _, raw = source_create(name=DEMO_SOURCE_NAME)
        else:
            raw = source_write_key_rotate(source=source)
            self.stdout.write(
                f"The demo source's write key was not in {key_file}: it was rotated, "
                "the old one no longer works."
            )
        key_file.parent.mkdir(exist_ok=True)
        key_file.unlink(missing_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(raw + "\n")
        return raw
