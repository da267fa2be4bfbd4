"""cdp_iso_ts without an EXCEPTION block.

0002's function caught a failed cast with ``EXCEPTION WHEN others``, which opens
a subtransaction on every call, and it was declared PARALLEL SAFE: in a parallel
worker that fails ("cannot start subtransactions during a parallel operation")
whenever the planner chooses a parallel plan for a refresh. This version checks
the one thing the pattern leaves open (the day exists in its month, leap years
included), so the cast can no longer fail, and it stays PARALLEL SAFE. It gives
the same answers as ``apps.segments.rules.instant_of`` (tests/segments/
test_iso_ts.py holds them together).
"""

from django.db import migrations

ISO_TS_SQL = r"""
CREATE OR REPLACE FUNCTION cdp_iso_ts(value jsonb) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE s text; y int; m int; d int; last_day int;
BEGIN
  IF value IS NULL OR jsonb_typeof(value) <> 'string' THEN RETURN NULL; END IF;
  s := value #>> '{}';
  IF s !~ '^(19|20|21)[0-9]{2}-[0-9]{2}-[0-9]{2}(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])?)?$' THEN
    RETURN NULL;
  END IF;
  y := substr(s, 1, 4)::int;
  m := substr(s, 6, 2)::int;
  d := substr(s, 9, 2)::int;
  IF m < 1 OR m > 12 OR d < 1 THEN RETURN NULL; END IF;
  last_day := CASE
    WHEN m IN (4, 6, 9, 11) THEN 30
    WHEN m = 2 THEN CASE WHEN (mod(y, 4) = 0 AND mod(y, 100) <> 0) OR mod(y, 400) = 0 THEN 29 ELSE 28 END
    ELSE 31
  END;
  IF d > last_day THEN RETURN NULL; END IF;
  IF length(s) = 10 THEN s := s || 'T00:00:00'; END IF;
  IF s !~ '(Z|[+-][0-9]{2}:[0-9]{2})$' THEN s := s || '+00:00'; END IF;
  RETURN s::timestamptz;
END $$;
"""


def iso_ts_replace(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ISO_TS_SQL)


def iso_ts_restore(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        from importlib import import_module

        previous = import_module("apps.segments.migrations.0002_rule_segments")
        schema_editor.execute(previous.ISO_TS_SQL)


class Migration(migrations.Migration):
    dependencies = [("segments", "0005_segment_fk_indexes_covered")]

    operations = [migrations.RunPython(iso_ts_replace, iso_ts_restore, elidable=False)]
