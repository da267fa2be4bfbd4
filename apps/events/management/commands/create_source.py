from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.events.auth import source_create, write_key_problem


class Command(BaseCommand):
    help = (
        "Create an event source (app or website) and print its write key. Only its "
        "SHA-256 is stored: the key is shown this once (rotate_write_key makes a new one)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name")
        parser.add_argument("--write-key", help="Use this key instead of a random one.")

    def handle(self, *args: Any, **options: Any) -> None:
        key = options["write_key"]
        if key is not None and (problem := write_key_problem(key)):
            raise CommandError(f"Could not create source: the write key {problem}.")
        try:
            _, raw = source_create(name=options["name"], write_key=key)
        except ValidationError as exc:
            raise CommandError(f"Could not create source: {exc}") from exc
        self.stdout.write(raw)
