from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from apps.events.models import Source


class Command(BaseCommand):
    help = "Create an event source (app or website) and print its write key."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name")
        parser.add_argument("--write-key", help="Use this key instead of a random one.")

    def handle(self, *args: Any, **options: Any) -> None:
        source = Source(name=options["name"])
        if options["write_key"]:
            source.write_key = options["write_key"]
        try:
            source.full_clean()
            source.save()
        except Exception as exc:  # ValidationError or IntegrityError
            if isinstance(exc, IntegrityError) or hasattr(exc, "message_dict"):
                raise CommandError(f"Could not create source: {exc}") from exc
            raise
        self.stdout.write(source.write_key)
