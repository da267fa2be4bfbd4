from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.events.auth import source_write_key_rotate, write_key_problem
from apps.events.models import Source


class Command(BaseCommand):
    help = (
        "Give a source a new write key and print it (shown this once). The old key "
        "stops working at once here and within CDP_WRITE_KEY_CACHE_SECONDS in the "
        "running servers."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="The source's name.")
        parser.add_argument("--write-key", help="Use this key instead of a random one.")

    def handle(self, *args: Any, **options: Any) -> None:
        key = options["write_key"]
        if key is not None and (problem := write_key_problem(key)):
            raise CommandError(f"Could not rotate: the write key {problem}.")
        source = Source.objects.filter(name=options["name"]).first()
        if source is None:
            raise CommandError(f'No source is named "{options["name"]}".')
        self.stdout.write(source_write_key_rotate(source=source, write_key=key))
