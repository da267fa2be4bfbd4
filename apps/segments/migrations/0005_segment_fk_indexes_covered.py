# The segment foreign keys of memberships and of the outbox lose their own
# single-column index (composite indexes that start with the segment serve every
# lookup by segment); the constraints stay as they are. Only the indexes are
# dropped, so the constraints are not re-validated over every row. On
# PostgreSQL they are dropped CONCURRENTLY (outside a transaction): a plain DROP
# INDEX queues for an ACCESS EXCLUSIVE lock on the table behind every open
# transaction that touched it, and every read and write of memberships queues
# behind it.

import django.db.models.deletion
from django.db import migrations, models

INDEXES = (
    ("segments_membership_segment_id_912e4c68", "segments_membership"),
    ("segments_membershipchange_segment_id_02db815f", "segments_membershipchange"),
)


def _concurrently(schema_editor) -> str:
    return " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""


def drop(apps, schema_editor) -> None:
    for name, _ in INDEXES:
        schema_editor.execute(f"DROP INDEX{_concurrently(schema_editor)} IF EXISTS {name}")


def create(apps, schema_editor) -> None:
    for name, table in INDEXES:
        schema_editor.execute(
            f"CREATE INDEX{_concurrently(schema_editor)} IF NOT EXISTS {name} "
            f"ON {table} (segment_id)"
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("segments", "0004_written_staging"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="membership",
                    name="segment",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="memberships",
                        to="segments.segment",
                    ),
                ),
                migrations.AlterField(
                    model_name="membershipchange",
                    name="segment",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="segments.segment",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop, create, atomic=False)],
        ),
    ]
