from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from apps.identity.dedup.services import dedup_run

STAGES = {
    "load": "loading profiles",
    "compare": "comparing pairs",
    "merge": "auto-merging",
}


class Command(BaseCommand):
    help = (
        "Find duplicate profiles that share no identifier: merge the sure pairs, queue "
        "the likely ones for review. Incremental (profiles changed since the last "
        "successful run) unless --full."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--full", action="store_true", help="Compare every live profile again.")
        parser.add_argument(
            "--no-progress", action="store_true", help="No progress bars on stderr."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bars: dict[str, tqdm[Any]] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if options["no_progress"] or stage not in STAGES:
                return
            bar = bars.get(stage)
            if bar is None:
                bar = bars[stage] = tqdm(
                    total=total, desc=STAGES[stage], unit="", file=self.stderr._out, leave=True
                )
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            run = dedup_run(full=options["full"], progress=progress)
        finally:
            for bar in bars.values():
                bar.close()
        if run is None:
            self.stdout.write("Another dedup run is in progress; nothing done.")
            return
        blocking = run.parameters.get("blocking", {})
        reduction = blocking.get("reduction")
        lines = [
            f"Dedup {run.mode} run #{run.pk}: {run.status} in {run.duration_seconds:.1f} s",
            f"  profiles scanned   {run.profiles_scanned:>10,} (read {run.profiles_loaded:,})",
            f"  pairs compared     {run.pairs_compared:>10,}"
            + (f" ({reduction:.4%} fewer than all pairs)" if reduction is not None else ""),
            f"  auto-merged        {run.auto_merged:>10,}",
            f"  queued for review  {run.queued:>10,}",
            f"  refused by rules   {run.refused:>10,}",
        ]
        self.stdout.write("\n".join(lines))
