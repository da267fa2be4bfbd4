# The segment foreign keys of memberships and of the outbox lose their own
# single-column index (composite indexes that start with the segment serve every
# lookup by segment); the constraints stay as they are. Only the indexes are
# dropped, so the constraints are not re-validated over every row.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
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
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS segments_membership_segment_id_912e4c68",
                    "CREATE INDEX segments_membership_segment_id_912e4c68 "
                    "ON segments_membership (segment_id)",
                ),
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS segments_membershipchange_segment_id_02db815f",
                    "CREATE INDEX segments_membershipchange_segment_id_02db815f "
                    "ON segments_membershipchange (segment_id)",
                ),
            ],
        ),
    ]
