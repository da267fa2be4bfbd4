"""A stricter append-only guard for the consent log on PostgreSQL (replaces 0002's).

* UPDATE may change ``profile_id`` and nothing else, and only along a merge or a
  split recorded by identity (``identity_profilemerge``, merges not undone):
  - merge: the record's profile was merged, directly or through others, into the
    new one (identity writes the merge record before moving the consent log);
  - split: the new profile is merged, directly or through others, into the
    record's current one (the merge being undone is not marked undone yet) and the
    record was made for the new profile or for one merged into it.
* DELETE only inside the erasure path (``cdp.erasure = 'on'`` for the transaction)
  *and* when an erasure request in progress names the record's profile in its
  work state (``work_state->'profile_ids'``): setting the flag alone opens nothing.
* TRUNCATE of a non-empty log is refused (an empty one has nothing to protect;
  test databases are emptied this way).

The table's owner can still disable triggers: run the application as a role that
does not own the tables for the guard to bind it too.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION consent_log_profile_merged(from_id uuid, into_id uuid)
RETURNS boolean AS $$
    -- Was profile from_id merged, directly or through others, into into_id?
    WITH RECURSIVE up(id) AS (
        SELECT from_id
        UNION
        SELECT m.survivor_id FROM identity_profilemerge m JOIN up ON m.absorbed_id = up.id
        WHERE m.undone_at IS NULL
    )
    SELECT from_id IS NOT NULL AND into_id IS NOT NULL
        AND EXISTS (SELECT 1 FROM up WHERE up.id = into_id AND up.id <> from_id);
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE FUNCTION consent_log_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF coalesce(current_setting('cdp.erasure', true), '') = 'on' AND EXISTS (
            SELECT 1 FROM consent_datasubjectrequest r
            WHERE r.type = 'erasure' AND r.status = 'in_progress'
              AND jsonb_typeof(r.work_state -> 'profile_ids') = 'array'
              AND (r.work_state -> 'profile_ids') ? OLD.profile_id::text
        ) THEN
            RETURN OLD;
        END IF;
    ELSIF (to_jsonb(NEW) - 'profile_id') = (to_jsonb(OLD) - 'profile_id') THEN
        IF NEW.profile_id = OLD.profile_id THEN
            RETURN NEW;
        END IF;
        IF consent_log_profile_merged(OLD.profile_id, NEW.profile_id) THEN
            RETURN NEW;  -- a merge
        END IF;
        IF consent_log_profile_merged(NEW.profile_id, OLD.profile_id) AND (
            NEW.origin_profile_id = NEW.profile_id
            OR consent_log_profile_merged(NEW.origin_profile_id, NEW.profile_id)
        ) THEN
            RETURN NEW;  -- a split
        END IF;
    END IF;
    RAISE EXCEPTION 'consent log is append-only: % of consent record % refused', TG_OP, OLD.id
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Record a new statement (e.g. a withdrawal) instead.';
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION consent_log_no_truncate() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM consent_consentrecord) THEN
        RAISE EXCEPTION 'consent log is append-only: TRUNCATE refused'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Erase people through a data-subject request.';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS consent_log_no_truncate ON consent_consentrecord;
CREATE TRIGGER consent_log_no_truncate
    BEFORE TRUNCATE ON consent_consentrecord
    FOR EACH STATEMENT EXECUTE FUNCTION consent_log_no_truncate();
"""

# Back to 0002's guard.
DROP = """
DROP TRIGGER IF EXISTS consent_log_no_truncate ON consent_consentrecord;
DROP FUNCTION IF EXISTS consent_log_no_truncate();
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
DROP FUNCTION IF EXISTS consent_log_profile_merged(uuid, uuid);
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0003_purpose_anonymized_properties"),
        ("identity", "0002_rules_merge_split"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
