"""The application's database role: what the application does, and nothing more.

The consent log is guarded by triggers (apps/consent/migrations/0004, 0007). The
owner of a table can switch its triggers off (``ALTER TABLE ... DISABLE TRIGGER``),
and a superuser can switch all of them off (``SET session_replication_role =
replica``). So in production the application connects as a role that owns nothing
and is no superuser. Migrations run as the owner; then ``manage.py db_app_role``
(``app_role_grant``) gives the application's role the rights it needs on the
tables the migrations made. docker-compose.yml runs both in its ``migrate`` service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection
from psycopg import sql


class RoleRefused(Exception):
    """The role may not be the application's: it could switch the guard off."""


@dataclass(frozen=True)
class _Role:
    exists: bool
    superuser: bool = False
    bypasses: bool = False  # replication or row-security bypass


def _tables_to_truncate() -> list[str]:
    """Tables the application empties with TRUNCATE (the dedup blocking index)."""
    from apps.identity.dedup.models import DedupBlockKey

    return [DedupBlockKey._meta.db_table]


def _role(cursor: Any, name: str) -> _Role:
    cursor.execute(
        "SELECT rolsuper, rolreplication OR rolbypassrls FROM pg_roles WHERE rolname = %s",
        [name],
    )
    row = cursor.fetchone()
    return _Role(True, bool(row[0]), bool(row[1])) if row else _Role(False)


def _owners(cursor: Any) -> list[str]:
    """Owners of the tables and sequences in the current schema."""
    cursor.execute(
        "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'S')"
    )
    return [owner for (owner,) in cursor.fetchall()]


def app_role_grant(name: str, *, create: bool = False, password: str | None = None) -> list[str]:
    """Make ``name`` the application's role on the current database and schema:
    create it if asked (a login role without special rights), set its password if
    given, and grant it what the application does (read and write rows, use the
    sequences, empty the tables it rebuilds). Refuses a role that owns tables here,
    may act as their owner, or is a superuser (any of them could switch the guard
    off). Idempotent; run it after every ``migrate``. Returns what it did."""
    if connection.vendor != "postgresql":
        raise RoleRefused("database roles need PostgreSQL")
    done: list[str] = []
    with connection.cursor() as cursor:
        raw = cursor.connection

        def run(statement: sql.Composable, params: list[str] | None = None) -> None:
            cursor.execute(statement.as_string(raw), params)

        role = _role(cursor, name)
        ident = sql.Identifier(name)
        if not role.exists:
            if not create:
                raise RoleRefused(f"role {name!r} does not exist (create it, or pass --create)")
            run(
                sql.SQL(
                    "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
                    " NOREPLICATION NOBYPASSRLS"
                ).format(ident)
            )
            done.append(f"created role {name}")
        elif role.superuser or role.bypasses:
            raise RoleRefused(
                f"role {name!r} is a superuser or bypasses replication or row security:"
                " it could switch the consent log's guard off"
            )
        cursor.execute("SELECT current_user")
        (current,) = cursor.fetchone()
        for owner in {current, *_owners(cursor)}:
            cursor.execute("SELECT pg_has_role(%s, %s, 'USAGE')", [name, owner])
            if cursor.fetchone()[0]:
                raise RoleRefused(
                    f"role {name!r} is, or may act as, {owner!r}, which owns the tables:"
                    " it could switch the consent log's guard off"
                )
        if password:
            run(sql.SQL("ALTER ROLE {} PASSWORD %s").format(ident), [password])
            done.append(f"set the password of {name}")
        cursor.execute("SELECT current_database(), current_schema()")
        database, schema = cursor.fetchone()
        db, ns = sql.Identifier(database), sql.Identifier(schema)
        run(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, ident))
        run(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ns, ident))
        run(
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
                ns, ident
            )
        )
        run(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(ns, ident))
        for table in _tables_to_truncate():
            run(sql.SQL("GRANT TRUNCATE ON {}.{} TO {}").format(ns, sql.Identifier(table), ident))
        done.append(
            f"granted {name} rows and sequences in {database}.{schema}"
            f" (and TRUNCATE on {', '.join(_tables_to_truncate())})"
        )
    return done
