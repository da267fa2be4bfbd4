"""Pin the consent log guard's search path (PostgreSQL).

The guard's functions (0004) look up ``consent_datasubjectrequest`` and
``identity_profilemerge`` by name, through the search path of whoever runs the
statement; and PostgreSQL looks in the session's temporary schema first. A role that
may create temporary tables (every role may, by default) could then put a table of
its own by that name in front of the real one (an "erasure in progress" naming any
profile) and delete consent records. With the path pinned to the schema of the
tables and the system catalog, with the temporary schema last, the guard reads the
real tables whoever runs it.
"""

from django.db import migrations

FUNCTIONS = (
    "consent_log_append_only()",
    "consent_log_profile_merged(uuid, uuid)",
    "consent_log_no_truncate()",
)


def _schema(schema_editor) -> str:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = 'consent_consentrecord'::regclass"
        )
        return cursor.fetchone()[0]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema = schema_editor.quote_name(_schema(schema_editor))
    for function in FUNCTIONS:
        schema_editor.execute(
            f"ALTER FUNCTION {function} SET search_path = pg_catalog, {schema}, pg_temp"
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for function in FUNCTIONS:
        schema_editor.execute(f"ALTER FUNCTION {function} RESET search_path")


class Migration(migrations.Migration):
    dependencies = [("consent", "0006_entered_by_protect")]

    operations = [migrations.RunPython(forwards, backwards)]
