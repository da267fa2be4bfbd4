"""The address comparator has a level more: "same street there, another house number"
(between "same city or postal code" and "similar address"). Such pairs were at the
first of these before, so a configuration's manual m, u or weights keep their
meaning when that level is split in two: the same weight on both halves."""

from django.db import migrations

OLD_LEVELS = 4


def split_area_level(apps, schema_editor):
    DedupField = apps.get_model("identity", "DedupField")
    for field in DedupField.objects.filter(comparator="address"):
        changed = False
        for attr in ("m_probabilities", "u_probabilities"):
            value = getattr(field, attr)
            if isinstance(value, list) and len(value) == OLD_LEVELS:
                half = value[1] / 2
                setattr(field, attr, [value[0], half, half, *value[2:]])
                changed = True
        if isinstance(field.weights, list) and len(field.weights) == OLD_LEVELS:
            field.weights = [*field.weights[:2], field.weights[1], *field.weights[2:]]
            changed = True
        if changed:
            field.save(update_fields=["m_probabilities", "u_probabilities", "weights"])


def join_area_level(apps, schema_editor):
    DedupField = apps.get_model("identity", "DedupField")
    for field in DedupField.objects.filter(comparator="address"):
        changed = False
        for attr in ("m_probabilities", "u_probabilities"):
            value = getattr(field, attr)
            if isinstance(value, list) and len(value) == OLD_LEVELS + 1:
                setattr(field, attr, [value[0], value[1] + value[2], *value[3:]])
                changed = True
        if isinstance(field.weights, list) and len(field.weights) == OLD_LEVELS + 1:
            field.weights = [*field.weights[:2], *field.weights[3:]]
            changed = True
        if changed:
            field.save(update_fields=["m_probabilities", "u_probabilities", "weights"])


class Migration(migrations.Migration):
    dependencies = [
        ("identity", "0006_dedup_value_frequency"),
    ]

    operations = [migrations.RunPython(split_area_level, join_area_level)]
