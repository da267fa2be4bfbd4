from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.clustering.models import ClusteringConfig, RunStatus
from apps.clustering.run import PHASES, recluster


class Command(BaseCommand):
    help = "Recluster now: one config by key, or every enabled config."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("config", nargs="?", help="the config's key (default: all enabled)")

    def handle(self, *args: Any, **options: Any) -> None:
        key = options.get("config")
        if key:
            configs = list(ClusteringConfig.objects.filter(key=key))
            if not configs:
                raise CommandError(f"no clustering config with key {key!r}")
        else:
            configs = list(ClusteringConfig.objects.filter(enabled=True).order_by("key"))
        failed = 0
        for config in configs:
            with tqdm(total=len(PHASES), desc=config.key, file=sys.stderr, unit="phase") as bar:

                def step(phase: str, bar: Any = bar) -> None:
                    bar.set_postfix_str(phase)
                    bar.update(1)

                run = recluster(config_id=config.pk, progress=step)
            if run is None:
                self.stdout.write(f"{config.key}: another run is in progress, skipped")
                failed += 1
                continue
            if run.status == RunStatus.SUCCEEDED:
                self.stdout.write(
                    f"{config.key}: run {run.pk} succeeded, k={run.chosen_k}, "
                    f"{run.population_size:,} profiles, stability "
                    f"{'n/a' if run.stability_ari is None else f'{run.stability_ari:.3f}'}"
                )
            else:
                failed += 1
                self.stdout.write(f"{config.key}: run {run.pk} {run.status}: {run.error}")
        if failed:
            raise CommandError(f"{failed} of {len(configs)} configs did not recluster")
