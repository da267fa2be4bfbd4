"""python manage.py db_app_role cdp_app --create --password-env CDP_APP_DB_PASSWORD

Run as the tables' owner after ``migrate``: gives the application's own database
role what it needs, so that the application does not connect as the owner (who
could switch the consent log's guard off). See apps/common/db_roles.py.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.common.db_roles import RoleRefused, app_role_grant


class Command(BaseCommand):
    help = "Grant the application's database role (not the owner) what the application needs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="the role the application connects as")
        parser.add_argument(
            "--create", action="store_true", help="create the role if it does not exist"
        )
        parser.add_argument(
            "--password-env",
            metavar="NAME",
            help="set the role's password from this environment variable (never the command"
            " line, which other users of the machine can read)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = None
        if options["password_env"]:
            password = os.environ.get(options["password_env"])
            if not password:
                raise CommandError(f"environment variable {options['password_env']} is not set")
        try:
            done = app_role_grant(options["role"], create=options["create"], password=password)
        except RoleRefused as exc:
            raise CommandError(str(exc)) from exc
        for line in done:
            self.stdout.write(line)
