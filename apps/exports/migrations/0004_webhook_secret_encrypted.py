"""Webhook signing secrets encrypted at rest (apps/common/crypto.py).

The plain ``webhook_secret`` column is encrypted into ``webhook_secret_encrypted``
with the key configured when the migration runs (CDP_SECRETS_KEY; unset: derived
from SECRET_KEY), then dropped. Reversible: going back decrypts them into the
plain column again, which needs a key that decrypts them (it fails, naming
CDP_SECRETS_KEY, otherwise, and changes nothing). It uses the current crypto
module, not a frozen copy: that module must keep decrypting what it wrote.

Deploying it: run it with the CDP_SECRETS_KEY the web and worker processes use
(compose's migrate service shares their environment), and stop the previous
release's processes first, since they still read the plain column. A secret
that the running processes cannot decrypt is not lost: its deliveries fail with
the reason and are retried until the right key is configured.
"""

from django.db import migrations, models


def encrypt(apps, schema_editor):
    from apps.common.crypto import secret_decrypt, secret_encrypt

    Destination = apps.get_model("exports", "Destination")
    for row in Destination.objects.exclude(webhook_secret="").only("pk", "webhook_secret"):
        token = secret_encrypt(row.webhook_secret)
        # The plain column goes at the end of this migration: make sure what
        # replaces it reads back before anything is lost.
        if secret_decrypt(token) != row.webhook_secret:
            raise RuntimeError(f"destination {row.pk}: the encrypted secret does not read back")
        Destination.objects.filter(pk=row.pk).update(webhook_secret_encrypted=token)


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
