"""Nicknames: which first names may be written for one another.

English names come from the ``nicknames`` package (a hand-curated dataset, Old
Dominion University / Carlton Northern); a few German and French short forms that
it lacks are added here.
"""

from __future__ import annotations

from functools import cache

# Formal name -> short forms, for names the dataset does not cover.
EXTRA_NICKNAMES: dict[str, tuple[str, ...]] = {
    "johannes": ("hannes", "hans", "jo"),
    "johann": ("hans",),
    "katharina": ("kathi", "katja", "kati", "kathrin"),
    "wolfgang": ("wolf",),
    "alexandra": ("sandra", "alex", "sascha"),
    "alexander": ("sascha", "alex"),
    "christina": ("tina", "chris"),
    "friedrich": ("fritz",),
    "margarete": ("grete", "gretchen"),
    "elisabeth": ("lisa", "liesel", "elli", "sisi"),
    "franziska": ("franzi",),
    "dominik": ("dome",),
    "jeanne": ("jeannette",),
    "francois": ("franck",),
    "guillaume": ("guy",),
}


@cache
def _lookup() -> dict[str, frozenset[str]]:
    """name -> every name it is a nickname of or has as a nickname (itself included)."""
    from nicknames import NickNamer

    namer = NickNamer()
    related: dict[str, set[str]] = {}
    for name, nicks in namer.nickname_lookup.items():
        for nick in nicks:
            related.setdefault(name, {name}).add(nick)
            related.setdefault(nick, {nick}).add(name)
    for formal, short_forms in EXTRA_NICKNAMES.items():
        for nick in short_forms:
            related.setdefault(formal, {formal}).add(nick)
            related.setdefault(nick, {nick}).add(formal)
    return {name: frozenset(names) for name, names in related.items()}


def related_names(name: str) -> frozenset[str]:
    """The name, its nicknames and the names it is short for (folded, lowercase)."""
    return _lookup().get(name, frozenset((name,)))


def canonical_names(name: str) -> frozenset[str]:
    """Names that stand for ``name`` in blocking: itself and the formal names it is
    short for, so that two nicknames of one name share a key."""
    return _canonical_lookup().get(name, frozenset()) | {name}


@cache
def _canonical_lookup() -> dict[str, frozenset[str]]:
    from nicknames import NickNamer

    lookup = {k: set(v) for k, v in NickNamer().canonical_lookup.items()}
    for formal, short_forms in EXTRA_NICKNAMES.items():
        for nick in short_forms:
            lookup.setdefault(nick, set()).add(formal)
    return {k: frozenset(v) for k, v in lookup.items()}


def are_nicknames(a: str, b: str) -> bool:
    return b in related_names(a)
