"""PostgreSQL refuses UPDATE and DELETE on the consent log.

Two exceptions: moving a record to another profile (merges and splits change
``profile_id`` and nothing else), and the erasure path, which sets
``cdp.erasure = 'on'`` for its transaction (``set_config(..., true)``).
On other databases nothing in the database guards it: the application never
updates or deletes a record outside those two paths, and admin shows it read-only.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION consent_log_append_only() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('cdp.erasure', true), '') = 'on' THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND (to_jsonb(NEW) - 'profile_id') = (to_jsonb(OLD) - 'profile_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'consent log is append-only: % of consent record % refused', TG_OP, OLD.id
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Record a new statement (e.g. a withdrawal) instead.';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER consent_log_append_only
    BEFORE UPDATE OR DELETE ON consent_consentrecord
    FOR EACH ROW EXECUTE FUNCTION consent_log_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS consent_log_append_only ON consent_consentrecord;
DROP FUNCTION IF EXISTS consent_log_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
