"""python manage.py features_rebuild: recompute every profile's features now."""

from typing import Any

from django.core.management.base import BaseCommand
from tqdm import tqdm

from apps.segments.services import features_rebuild


class Command(BaseCommand):
    help = "Recompute every profile's behavioural features from its events, then the RFM scores."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--chunk-size", type=int, default=1000)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        bar = tqdm(
            total=0,
            unit="profiles",
            disable=options["no_progress"],
            file=self.stderr,
            desc="features",
        )

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        written = features_rebuild(chunk_size=options["chunk_size"], progress=progress)
        bar.close()
        self.stdout.write(self.style.SUCCESS(f"Features of {written} profiles rebuilt."))
