"""Prepare a local install for a first look: demo data, an admin login, keys."""

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from apps.api_auth.services import api_token_create
from apps.events.models import Source


class Command(BaseCommand):
    help = "Load demo data (once), ensure an admin login and print how to use them."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--customers", type=int, default=2000)
        parser.add_argument("--skip-demo", action="store_true")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
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
        source = Source.objects.filter(name="Demo web").first()
        write_key = source.write_key if source else "(run: python manage.py create_source NAME)"
        url = options["base_url"].rstrip("/")
        self.stdout.write(
            self.style.SUCCESS("\nCDP is ready.\n")
            + f"  Admin:      {url}/admin/  login admin / {password}\n"
            + f"  API docs:   {url}/api/docs/\n"
            + f"  Write key:  {write_key}   (POST events to {url}/v1/...)\n"
            + f"  API token:  {token}   (Authorization: Bearer ..., valid 30 days)\n"
        )
