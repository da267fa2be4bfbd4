"""The application's database role: what the application does, and nothing more.

The consent log is guarded by triggers (apps/consent/migrations/0004, 0007). The
owner of a table can switch its triggers off (``ALTER TABLE ... DISABLE TRIGGER``),
and a superuser can switch all of them off (``SET session_replication_role =
replica``). So in production the application connects as a role that owns nothing
and is no superuser. Migrations run as the owner; then ``manage.py db_app_role``
(``app_role_grant``) gives the application's role the rights it needs on the
tables the migrations made. docker-compose.yml runs both in its ``migrate`` service.

What the guard then enforces on the application: consent records are deleted only
while an erasure request in progress names their profile, and moved only along a
recorded merge or split. It cannot tell a real request or merge from one the
application forged (the application writes both tables): an attacker who holds the
application's own database credentials can still delete consent records by
writing such a request first. That is inherent: the application is what decides an
erasure, so no rule in its database can tell a real request from a forged one; the
guard makes sure that no statement goes without one, by mistake or by a stray query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection
from psycopg import sql

from .registry import Registry


class RoleRefused(Exception):
    """The role may not be the application's: it could switch the guard off."""


@dataclass(frozen=True)
class _Role:
    exists: bool
    # Any of these lets a role switch the guard off, or give itself the right to.
    superuser: bool = False
    createrole: bool = False
    bypasses: bool = False  # replication or row-security bypass


# Tables the application empties with TRUNCATE, which needs a grant of its own:
# the apps that do register theirs (identity: the dedup blocking index), in ready().
truncated_tables: Registry[str] = Registry("common.db_roles.truncated_tables")


def _tables_to_truncate() -> list[str]:
    return list(truncated_tables)


def _role(cursor: Any, name: str) -> _Role:
    cursor.execute(
        "SELECT rolsuper, rolcreaterole, rolreplication OR rolbypassrls"
        " FROM pg_roles WHERE rolname = %s",
        [name],
    )
    row = cursor.fetchone()
    return _Role(True, *map(bool, row)) if row else _Role(False)


def _owners(cursor: Any) -> set[str]:
    """Roles that could switch the guard off or replace what it reads: the current
    user (who runs migrations), the owners of the schema's tables, sequences and
    functions, of the schema itself and of the database."""
    cursor.execute(
        "SELECT pg_get_userbyid(c.relowner) FROM pg_class c"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'S')"
        " UNION SELECT pg_get_userbyid(p.proowner) FROM pg_proc p"
        " WHERE p.pronamespace = current_schema()::regnamespace"
        " UNION SELECT pg_get_userbyid(n.nspowner) FROM pg_namespace n"
        " WHERE n.oid = current_schema()::regnamespace"
        " UNION SELECT pg_get_userbyid(d.datdba) FROM pg_database d"
        " WHERE d.datname = current_database()"
        " UNION SELECT current_user"
    )
    return {owner for (owner,) in cursor.fetchall()}


def app_role_grant(name: str, *, create: bool = False, password: str | None = None) -> list[str]:
    """Make ``name`` the application's role on the current database and schema:
    create it if asked (a login role without special rights), set its password if
    given, and grant it what the application does (read and write rows, use the
    sequences, empty the tables it rebuilds), also on the tables later migrations
    make (default privileges of the current user, who runs them). Refuses a role
    that is a superuser, may create roles or bypass row security, is or may become
    an owner of the tables, functions, schema or database, or may create objects in
    the schema: any of them could switch the guard off or stand in for what it
    reads. Idempotent; run it after every ``migrate``. Returns what it did."""
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
        elif role.superuser or role.createrole or role.bypasses:
            raise RoleRefused(
                f"role {name!r} is a superuser, may create roles, or bypasses replication or"
                " row security: it could switch the consent log's guard off"
            )
        for owner in sorted(_owners(cursor)):
            # MEMBER, not USAGE: a NOINHERIT member may still SET ROLE to the owner.
            cursor.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", [name, owner])
            if cursor.fetchone()[0]:
                raise RoleRefused(
                    f"role {name!r} is, or may act as, {owner!r}, an owner here:"
                    " it could switch the consent log's guard off"
                )
        cursor.execute("SELECT current_database(), current_schema()")
        database, schema = cursor.fetchone()
        db, ns = sql.Identifier(database), sql.Identifier(schema)
        run(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(ns, ident))
        cursor.execute("SELECT has_schema_privilege(%s, %s, 'CREATE')", [name, schema])
        if cursor.fetchone()[0]:
            raise RoleRefused(
                f"role {name!r} may create objects in schema {schema!r} (through PUBLIC or"
                f" another role): a function of its own could stand in for one the guard"
                f" calls. REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC first."
            )
        if password:
            # Sent as a SCRAM verifier, so that the password itself is in no log.
            verifier = raw.pgconn.encrypt_password(
                password.encode(), name.encode(), b"scram-sha-256"
            ).decode()
            run(sql.SQL("ALTER ROLE {} PASSWORD %s").format(ident), [verifier])
            done.append(f"set the password of {name}")
        run(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, ident))
        run(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ns, ident))
        rows = sql.SQL("SELECT, INSERT, UPDATE, DELETE")
        sequences = sql.SQL("USAGE, SELECT")
        for privileges, kind in ((rows, "TABLES"), (sequences, "SEQUENCES")):
            run(
                sql.SQL("GRANT {} ON ALL {} IN SCHEMA {} TO {}").format(
                    privileges, sql.SQL(kind), ns, ident
                )
            )
            run(
                sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON {} TO {}").format(
                    ns, privileges, sql.SQL(kind), ident
                )
            )
        truncated = _tables_to_truncate()
        for table in truncated:
            run(sql.SQL("GRANT TRUNCATE ON {}.{} TO {}").format(ns, sql.Identifier(table), ident))
        done.append(
            f"granted {name} rows and sequences in {database}.{schema}, also of tables"
            f" made later (and TRUNCATE on {', '.join(truncated)})"
        )
    return done
