from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("segments", "0002_rule_segments"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="membership",
            index=models.Index(
                condition=models.Q(("exited_at__isnull", True)),
                fields=["profile", "segment"],
                name="membership_profile_cur_idx",
            ),
        ),
    ]
