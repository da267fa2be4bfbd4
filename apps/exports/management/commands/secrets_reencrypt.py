from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.exports.services import destination_secrets_reencrypt


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored webhook secret under the first key of CDP_SECRETS_KEY "
        "(rotation: put the new key first, run this, then drop the old key). Fails, "
        "naming the destinations, when a secret no configured key decrypts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="Write nothing; fail if a secret is not yet under the first key or unreadable.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        check = options["check"]
        done = destination_secrets_reencrypt(dry_run=check)
        verb = "to re-encrypt" if check else "re-encrypted"
        self.stdout.write(
            f"{done.reencrypted} secret(s) {verb}, {done.current} already under the first key, "
            f"{len(done.unreadable)} unreadable."
        )
        for key, why in sorted(done.unreadable.items()):
            self.stderr.write(f"destination {key}: {why}")
        if done.unreadable:
            raise CommandError(
                f"{len(done.unreadable)} webhook secret(s) could not be decrypted "
                f"({', '.join(sorted(done.unreadable))}): keep the old key in CDP_SECRETS_KEY, "
                "or rotate those destinations' secrets in admin."
            )
        if check and done.reencrypted:
            raise CommandError(f"{done.reencrypted} secret(s) are not under the first key yet.")
