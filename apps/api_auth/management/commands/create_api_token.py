from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.api_auth.services import api_token_create, service_user_ensure


class Command(BaseCommand):
    help = (
        "Create a management API token and print it (it is stored hashed and cannot "
        "be shown again). Without --user, the token belongs to a service user "
        "'api-NAME' with access to all CDP data (or read-only with --read-only). "
        "Force-merging profiles against the identity safety rules is not included: "
        "add --force-merge to grant it."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name")
        parser.add_argument("--user", help="Username the token acts as.")
        parser.add_argument("--read-only", action="store_true")
        parser.add_argument("--expires-in-days", type=int, default=None)
        parser.add_argument(
            "--force-merge",
            action="store_true",
            help="Also allow merging profiles against the safety rules (audited). "
            "The permission belongs to the service user, so to all of its tokens.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user: Any
        if options["force_merge"] and (options["user"] or options["read_only"]):
            raise CommandError(
                "--force-merge applies to a full-access service user (not with --user or "
                "--read-only); grant a person's account the permission in admin."
            )
        if options["user"]:
            try:
                user = get_user_model().objects.get(username=options["user"])
            except get_user_model().DoesNotExist as exc:
                raise CommandError(f"No user named {options['user']!r}.") from exc
        else:
            user = service_user_ensure(
                name=options["name"],
                read_only=options["read_only"],
                force_merge=options["force_merge"],
            )
        _, raw = api_token_create(
            name=options["name"], user=user, expires_in_days=options["expires_in_days"]
        )
        self.stdout.write(raw)
