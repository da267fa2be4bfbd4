"""Write keys stored as their SHA-256 and a short prefix, no longer as they are.

Irreversible for the keys themselves: going back cannot bring them back, so it
refuses while sources exist (their clients would all be shut out by new keys).
"""

import hashlib

from django.db import migrations, models

import apps.events.models


def hash_keys(apps, schema_editor):
    Source = apps.get_model("events", "Source")
    for source in Source.objects.only("pk", "write_key"):
        raw = source.write_key
        source.write_key_hash = hashlib.sha256(raw.encode()).hexdigest()
        source.write_key_prefix = raw[: min(6, len(raw) // 4)]
        source.save(update_fields=["write_key_hash", "write_key_prefix"])


def refuse_back(apps, schema_editor):
    if apps.get_model("events", "Source").objects.exists():
        raise RuntimeError(
            "events 0005 cannot be reversed while sources exist: only the SHA-256 of "
            "their write keys is stored, the keys themselves are gone."
        )


class Migration(migrations.Migration):

    dependencies = [
        ("events", "0004_pipeline_batch"),
    ]

    operations = [
        migrations.AddField(
            model_name="source",
            name="write_key_prefix",
            field=models.CharField(blank=True, default="", editable=False, max_length=12),
        ),
        migrations.AddField(
            model_name="source",
            name="write_key_hash",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(hash_keys, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="source",
            name="write_key",
        ),
        migrations.AlterField(
            model_name="source",
            name="write_key_hash",
            field=models.CharField(
                default=apps.events.models.unusable_write_key_hash,
                editable=False,
                max_length=64,
                unique=True,
            ),
        ),
        migrations.RunPython(migrations.RunPython.noop, refuse_back),
    ]
