# The profile foreign keys of memberships and of the outbox lose their database
# constraint too (db_constraint=False; the ORM's cascade stays). Their per-row
# triggers were a query and a FOR KEY SHARE lock on the profile row for every
# row a swap inserted: a million profile rows locked (pages dirtied, WAL written)
# in a first cluster run, 3.1 s and 2.8 s of it (bench/README.md).
#
# What the constraint guaranteed, that no membership or outbox row outlives its
# profile, is kept by locks (apps/segments/memberships.py): the writers of single
# profiles lock them FOR UPDATE and write only for live ones (as before); the set
# writers (a rule refresh's or a cluster run's swap) hold the erasure lock shared
# and insert only for profiles that exist after they hold it; the memberships
# eraser holds it exclusively and locks the profiles FOR UPDATE before it deletes,
# and erasure deletes the profiles in the same transaction as its last pass.
#
# Same way of dropping as 0007: short lock waits, retried, so that readers never
# queue behind it for long. SQLite keeps the constraints.

import random
import time

import django.db.models.deletion
from django.db import OperationalError, migrations, models, transaction

FKS = (
    ("segments_membership", "profile_id"),
    ("segments_membershipchange", "profile_id"),
)
# Dropping a foreign key locks the referenced table (identity_profile) ACCESS EXCLUSIVE
# as well as the referencing one: while an attempt waits, queries of both queue
# behind it. So an attempt waits at most 50 ms, and the pauses between attempts
# grow (with jitter, 0.1 s to 3 s), about two minutes in all before it gives up.
LOCK_TIMEOUT = "50ms"
ATTEMPTS = 60


def _constraint(cursor, table: str, column: str) -> str | None:
    cursor.execute(
        """SELECT c.conname FROM pg_constraint c
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
            WHERE c.contype = 'f' AND c.conrelid = %s::regclass AND a.attname = %s""",
        [table, column],
    )
    row = cursor.fetchone()
    return row[0] if row else None


def _with_short_locks(connection, statements) -> None:
    for attempt in range(ATTEMPTS):
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                statements(cursor)
            return
        except OperationalError:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(min(3.0, 0.1 * 1.25**attempt) * random.uniform(0.5, 1.5))


def drop(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    for table, column in FKS:

        def statements(cursor, table=table, column=column) -> None:
            name = _constraint(cursor, table, column)
            if name is not None:
                cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')

        _with_short_locks(connection, statements)


def create(apps, schema_editor) -> None:
    """Back: as 0007's, for the profile keys."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    for model_name in ("membership", "membershipchange"):
        model = apps.get_model("segments", model_name)
        field = model._meta.get_field("profile")
        table, column = model._meta.db_table, field.column
        # Quoted already, as Django names it (..._fk_identity_profile_id).
        name = str(
            schema_editor._fk_constraint_name(model, field, "_fk_%(to_table)s_%(to_column)s")
        )

        def statements(cursor, table=table, column=column, name=name) -> None:
            if _constraint(cursor, table, column) is None:
                cursor.execute(
                    f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({column}) "
                    "REFERENCES identity_profile (id) DEFERRABLE INITIALLY DEFERRED NOT VALID"
                )

        _with_short_locks(connection, statements)
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} t WHERE NOT EXISTS "
                f"(SELECT 1 FROM identity_profile p WHERE p.id = t.{column})"
            )
            cursor.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("segments", "0007_segment_fk_constraints_dropped"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="membership",
                    name="profile",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="identity.profile",
                    ),
                ),
                migrations.AlterField(
                    model_name="membershipchange",
                    name="profile",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="identity.profile",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop, create, atomic=False)],
        ),
    ]
