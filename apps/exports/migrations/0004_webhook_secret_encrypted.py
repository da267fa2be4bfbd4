"""Webhook signing secrets encrypted at rest (apps/common/crypto.py).

The plain ``webhook_secret`` column is encrypted into ``webhook_secret_encrypted``
with the key configured when the migration runs (CDP_SECRETS_KEY; unset: derived
from SECRET_KEY), then dropped. Reversible: going back decrypts them into the
plain column again, which needs a key that decrypts them (it fails, naming
CDP_SECRETS_KEY, otherwise, and changes nothing). It uses the current crypto
module, not a frozen copy: that module must keep decrypting what it wrote.
"""

from django.db import migrations, models


def encrypt(apps, schema_editor):
    from apps.common.crypto import secret_encrypt

    Destination = apps.get_model("exports", "Destination")
    for row in Destination.objects.exclude(webhook_secret="").only("pk", "webhook_secret"):
        Destination.objects.filter(pk=row.pk).update(
            webhook_secret_encrypted=secret_encrypt(row.webhook_secret)
        )


def decrypt(apps, schema_editor):
    from apps.common.crypto import secret_decrypt

    Destination = apps.get_model("exports", "Destination")
    for row in Destination.objects.exclude(webhook_secret_encrypted="").only(
        "pk", "webhook_secret_encrypted"
    ):
        Destination.objects.filter(pk=row.pk).update(
            webhook_secret=secret_decrypt(row.webhook_secret_encrypted)
        )


class Migration(migrations.Migration):

    dependencies = [
        ("exports", "0003_exportfile_expire_error"),
    ]

    operations = [
        migrations.AddField(
            model_name="destination",
            name="webhook_secret_encrypted",
            field=models.TextField(blank=True, default="", editable=False),
        ),
        migrations.RunPython(encrypt, decrypt),
        migrations.RemoveField(
            model_name="destination",
            name="webhook_secret",
        ),
    ]
