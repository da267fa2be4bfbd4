"""The user_id row shows what is in force: strongest, one per profile.

Both are pinned in code (``IdentityRules``) and read-only in admin; a row edited
before that is set back, so the admin does not show a priority that is ignored.
"""

from django.db import migrations


def pin_user_id_row(apps, schema_editor):
    config = apps.get_model("identity", "IdentifierTypeConfig")
    config.objects.filter(key="user_id").update(priority=0, max_per_profile=1)


class Migration(migrations.Migration):

    dependencies = [
        ("identity", "0003_dedup"),
    ]

    operations = [
        migrations.RunPython(pin_user_id_row, migrations.RunPython.noop),
    ]
