from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    """The events table is the biggest there is: on PostgreSQL the index is built
    without blocking ingestion (CREATE INDEX CONCURRENTLY); elsewhere as usual."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(
            self, app_label, schema_editor, from_state, to_state
        )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(
            self, app_label, schema_editor, from_state, to_state
        )


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction.
    atomic = False

    dependencies = [
        ("events", "0002_drop_redundant_fk_indexes"),
    ]

    operations = [
        # A constant default: PostgreSQL adds the column without rewriting the table.
        migrations.AddField(
            model_name="event",
            name="timestamp_corrected",
            field=models.BooleanField(default=False),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="event",
            index=models.Index(
                condition=models.Q(("timestamp_corrected", True)),
                fields=["source"],
                name="event_time_corrected_idx",
            ),
        ),
    ]
