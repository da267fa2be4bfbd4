"""The ad platforms' rows (``matching.google_row``, ``matching.meta_row``)
computed by PostgreSQL, for the rows where that is certain to give the same
bytes as Python: every text involved is printable ASCII (U+0020 to U+007E),
every trait used is a JSON string or absent, and the phone is empty or already
E.164. There the normalizations are plain (lowercase of ASCII, spaces, the
ASCII punctuation) and PostgreSQL's ``sha256`` hashes them in C. Any other row
(accents, other scripts, a number where a name should be, a phone to parse
with libphonenumber) comes back with its raw values for Python to do.

At a million rows this takes the per-row Python work (JSON, normalizing,
hashing, CSV quoting: about 25 us a row for Meta) down to writing a finished
line; tests/exports/test_matching_sql.py checks with hypothesis that both
give the same row for widely varying inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

from .models import DestinationKind

E164 = r"^(\+[1-9][0-9]{6,14})?$"


def _hash(expr: str) -> str:
    # "" stays "" (NULLIF: the expression is evaluated once, not once to test
    # it and again to hash it).
    return f"coalesce(encode(sha256(convert_to(nullif({expr}, ''), 'UTF8')), 'hex'), '')"


def _lower(expr: str) -> str:
    # ASCII only, whatever the database's collation (a Turkish one lowers "I" to
    # a dotless i).
    return f'lower({expr} COLLATE "C")'


def _letters(expr: str) -> str:
    # matching._letters on printable ASCII without spaces: lowercase, and only
    # letters and digits left (string.punctuation is every other printable).
    return f"regexp_replace({_lower(expr)}, '[^a-z0-9]', '', 'g')"


def _csv_field(expr: str) -> str:
    # Python's csv (QUOTE_MINIMAL) on printable ASCII: quoted if it holds a
    # comma or a quote, quotes doubled.
    return (
        f"(CASE WHEN {expr} ~ '[\",]' THEN '\"' || replace({expr}, '\"', '\"\"') || '\"' "
        f"ELSE {expr} END)"
    )


_TRAITS = {
    "fn": "j.fn",
    "ln": "j.ln",
    "zip": "(j.address -> 'postalCode')",
    "city": "(j.address -> 'city')",
    "state": "(j.address -> 'state')",
    "country": "(j.address -> 'country')",
}


def _lateral(kind: str) -> str:
    """``j``: the traits used, as JSON; ``r``: their texts ('' when missing) and
    ``sure``; ``n``: the texts normalized as the kind wants them, before hashing.
    Each is computed once per row (OFFSET 0 keeps the planner from pasting its
    expressions into every place that uses them)."""
    texts = ", ".join(
        f"coalesce({json} #>> '{{}}', '') AS {name}" for name, json in _TRAITS.items()
    )
    # Every trait a JSON string, null or absent (a number, say, goes to
    # Python), and every text printable ASCII: one test of them all joined.
    types = " AND ".join(
        f"coalesce(jsonb_typeof({json}), 'null') IN ('string', 'null')" for json in _TRAITS.values()
    )
    joined = " || ".join(
        [
            "coalesce(q.email, '')",
            "coalesce(q.phone, '')",
            *(f"coalesce({json} #>> '{{}}', '')" for json in _TRAITS.values()),
        ]
    )
    sure = (
        f"{types} AND ({joined}) !~ '[^ -~]' "
        f"AND (q.phone IS NULL OR btrim(q.phone, ' ') ~ '{E164}')"
    )
    email = _lower("btrim(r.email, ' ')")
    country = (
        "CASE WHEN btrim(r.country, ' ') ~ '^[A-Za-z]{2}$' "
        "THEN upper(btrim(r.country, ' ') COLLATE \"C\") ELSE '' END"
    )
    if kind == DestinationKind.GOOGLE_CUSTOMER_MATCH:

        def name(text: str) -> str:
            return f"btrim(regexp_replace({_lower(text)}, ' +', ' ', 'g'), ' ')"

        fields = [
            f"{name('r.fn')} AS fn",
            f"{name('r.ln')} AS ln",
            _csv_field("btrim(r.zip, ' ')") + " AS zip",
        ]
    else:
        fields = [
            f"{_letters('r.fn')} AS fn",
            f"{_letters('r.ln')} AS ln",
            f"replace(replace({_lower('r.zip')}, ' ', ''), '-', '') AS zip",
            f"{_letters('r.city')} AS city",
            f"{_letters('r.state')} AS state",
        ]
    return f"""
CROSS JOIN LATERAL (
    SELECT q.traits -> 'firstName' AS fn, q.traits -> 'lastName' AS ln,
           q.traits -> 'address' AS address
    OFFSET 0
) j
CROSS JOIN LATERAL (
    SELECT {sure} AS sure, coalesce(q.email, '') AS email, coalesce(q.phone, '') AS phone,
           {texts}
    OFFSET 0
) r
CROSS JOIN LATERAL (
    SELECT CASE WHEN position('@' in {email}) > 0 THEN {email} ELSE '' END AS email,
           btrim(r.phone, ' ') AS e164, {country} AS country, {", ".join(fields)}
    OFFSET 0
) n"""


def _google_line() -> str:
    fields = [_hash("n.email"), _hash("n.e164"), _hash("n.fn"), _hash("n.ln"), "n.country", "n.zip"]
    return " || ',' || ".join(fields)


def _meta_line() -> str:
    fields = [
        _hash("n.email"),
        _hash("ltrim(n.e164, '+')"),
        _hash("n.fn"),
        _hash("n.ln"),
        _hash("CASE WHEN n.country = 'US' THEN left(n.zip, 5) ELSE n.zip END"),
        _hash("n.city"),
        _hash("CASE WHEN n.country = 'US' THEN left(n.state, 2) ELSE n.state END"),
        _hash(_lower("n.country")),
    ]
    return " || ',' || ".join(fields)


# Each profile's smallest email and phone identifier (as selectors._identifier
# picks them), for every profile at once: one ordered pass over the identifiers'
# (profile, type) index, merge-joined with the audience, where a correlated
# subquery per row and type cost 2.5 us each at a million rows.
_IDENTIFIERS = """
SELECT profile_id,
       min(value) FILTER (WHERE type = 'email') AS email,
       min(value) FILTER (WHERE type = 'phone') AS phone
FROM identity_identifier WHERE type IN ('email', 'phone') GROUP BY profile_id"""


def rows_sql(kind: str, inner: str, columns: Sequence[str]) -> str:
    """Over ``inner`` (the audience query, its columns named ``columns``: pk,
    traits, email, phone and maybe member), rows of (pk, line, traits, email,
    phone[, member]): ``line`` the finished CSV line without its end, "" for a
    row with neither email nor phone (skipped, as Python skips it), NULL when
    Python must do the row (then traits, email and phone are given, else NULL).

    Without email and phone among ``columns`` (a full run: most profiles), they
    are joined here from all identifiers at once, the trait where there is no
    identifier (as selectors._contact does)."""
    line = _google_line() if kind == DestinationKind.GOOGLE_CUSTOMER_MATCH else _meta_line()
    extra = ", q.member" if "member" in columns else ""
    source = f"({inner}) AS q({', '.join(columns)})"
    if "email" not in columns:
        source = f"""(
    SELECT q0.*, coalesce(i.email, q0.traits ->> 'email') AS email,
           coalesce(i.phone, q0.traits ->> 'phone') AS phone
    FROM ({inner}) AS q0({", ".join(columns)})
    LEFT JOIN ({_IDENTIFIERS}) AS i ON i.profile_id = q0.pk
) AS q"""
    return f"""
SELECT q.pk,
       CASE WHEN NOT r.sure THEN NULL
            WHEN n.email = '' AND n.e164 = '' THEN ''
            ELSE {line} END AS line,
       CASE WHEN r.sure THEN NULL ELSE q.traits END,
       CASE WHEN r.sure THEN NULL ELSE q.email END,
       CASE WHEN r.sure THEN NULL ELSE q.phone END{extra}
FROM {source}
{_lateral(kind)}
ORDER BY q.pk"""
