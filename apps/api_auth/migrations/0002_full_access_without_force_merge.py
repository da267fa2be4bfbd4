"""Tokens of the full-access service group no longer force-merge profiles.

The group used to hold every CDP permission, ``identity.force_merge_profile``
included; now that permission is granted to a service user explicitly
(``create_api_token --force-merge``). Existing service users keep it only if it
was granted to them directly.
"""

from django.db import migrations


def drop_force_merge_from_full_access(apps, schema_editor):
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    perms = permission_model.objects.filter(
        content_type__app_label="identity", codename="force_merge_profile"
    )
    for group in group_model.objects.filter(name="API full access"):
        group.permissions.remove(*perms)


class Migration(migrations.Migration):

    dependencies = [
        ("api_auth", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(drop_force_merge_from_full_access, migrations.RunPython.noop),
    ]
