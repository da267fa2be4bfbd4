"""Candidate pairs: their rows and evidence, and the pairs never to propose again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.common.bulk import bulk_insert, bulk_set
from apps.identity.models import Profile

from ..compare import LEVELS, Comparison, IndexArray, compare_pairs
from ..fellegi_sunter import Model
from ..models import DedupRun, DuplicateCandidate
from ..records import Records
from .scoring import vetoes


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def pair_key(a: uuid.UUID, b: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    return (a, b) if a < b else (b, a)


def live_map(ids: set[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Each id -> the live profile it was (eventually) merged into."""
    parent: dict[uuid.UUID, uuid.UUID | None] = {}
    todo = set(ids)
    while todo:
        found: dict[uuid.UUID, uuid.UUID | None] = {}
        for chunk in chunks(sorted(todo), 5000):
            found.update(Profile.objects.filter(id__in=chunk).values_list("id", "merged_into_id"))
        parent.update(found)
        todo = {p for p in found.values() if p is not None and p not in parent}
    result = {}
    for pid in ids:
        current, seen = pid, set()
        while parent.get(current) is not None and current not in seen:
            seen.add(current)
            current = parent[current]  # type: ignore[assignment]
        result[pid] = current
    return result


def decided_pairs() -> set[tuple[uuid.UUID, uuid.UUID]]:
    """Pairs never to be proposed again, as live profile ids: rejected ones (also
    after either side was merged into another profile), refused ones, and merged
    ones that were split apart again."""
    rows = list(
        DuplicateCandidate.objects.exclude(status=DuplicateCandidate.Status.PENDING).values_list(
            "profile_a_id", "profile_b_id"
        )
    )
    live = live_map({p for row in rows for p in row})
    decided = set()
    for a, b in rows:
        la, lb = live[a], live[b]
        if la != lb:
            decided.add(pair_key(la, lb))
    return decided


def drop_decided(records: Records, left: IndexArray, right: IndexArray) -> np.ndarray:
    decided = decided_pairs()
    keep = np.ones(len(left), dtype=bool)
    if not decided:
        return keep
    index = {pid: i for i, pid in enumerate(records.ids)}
    n = len(records)
    codes = []
    for a, b in decided:
        i, j = index.get(a), index.get(b)
        if i is not None and j is not None:
            codes.append(min(i, j) * n + max(i, j))
    if codes:
        keep &= ~np.isin(left * n + right, np.array(codes, dtype=np.int64))
    return keep


def evidence(
    records: Records, comparison: Comparison, weights: np.ndarray, k: int, i: int, j: int
) -> dict[str, Any]:
    """The evidence of pair ``k`` (rows ``i`` and ``j``), as stored with its candidate."""
    return _Evidence(records, comparison, weights)(k, i, j)


class _Evidence:
    """Evidence for many pairs of one comparison: the arrays are read as Python
    lists once (reading numpy scalars one by one was most of building a dedup
    run's candidates), with the same values as ``float``/``int``/``bool`` of each."""

    def __init__(self, records: Records, comparison: Comparison, weights: np.ndarray) -> None:
        self.specs = [(spec.name, LEVELS[spec.comparator]) for spec in records.specs]
        self.raw = [records.raw[spec.name] for spec in records.specs]
        self.level = comparison.level.tolist()
        self.similarity = comparison.similarity.tolist()
        self.weight = weights.tolist()
        self.swapped = comparison.swapped.tolist()
        self.flags = [
            (name, getattr(comparison, name).tolist())
            for name in (
                "first_name_slip",
                "last_name_slip",
                "first_name_nickname",
                "first_name_nickname_typo",
                "email_mirrors_names",
            )
        ]
        self.merged = None if records.merged is None else records.merged.tolist()
        self.first = records.raw.get("first_name")
        self.last = records.raw.get("last_name")

    def __call__(self, k: int, i: int, j: int) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        levels_k, similarity_k, weight_k = self.level[k], self.similarity[k], self.weight[k]
        for f, (name, labels) in enumerate(self.specs):
            level = levels_k[f]
            raw = self.raw[f]
            fields[name] = {
                "values": [raw[i], raw[j]],
                "similarity": round(similarity_k[f], 3),
                "level": level,
                "label": labels[level] if level >= 0 else "missing",
                "weight": round(weight_k[f], 3),
            }
        swapped = bool(self.swapped[k])
        if swapped:
            # The values compared were the first name of one and the last of the other.
            first, last = self.first, self.last
            assert first is not None and last is not None
            fields["first_name"]["values"] = [first[i], last[j]]
            fields["last_name"]["values"] = [last[i], first[j]]
        levels = {name: item["level"] for name, item in fields.items()}
        flags = {name: bool(values[k]) for name, values in self.flags}
        flags["merged_profile"] = self.merged is not None and bool(self.merged[i] or self.merged[j])
        return {
            "fields": fields,
            "swapped_names": swapped,
            **flags,
            "vetoes": vetoes(levels, **flags),
        }


def candidates_build(
    run: DedupRun | None,
    records: Records,
    left: IndexArray,
    right: IndexArray,
    scores: np.ndarray,
    model: Model,
    adjustments: np.ndarray | None = None,
    *,
    pending: dict[tuple[uuid.UUID, uuid.UUID], int] | None = None,
) -> list[DuplicateCandidate]:
    """Candidate rows (not saved yet) for the pairs above the review bar's score; a
    pair still pending from an earlier run keeps its row. ``adjustments``: the
    frequency adjustments of the field weights (see ``frequency``). ``pending``:
    the pending rows' ids by pair, read from the database unless given (an
    in-memory run without a database, bench/dedup_ceiling.py, gives none)."""
    if len(left) == 0:
        model.em.setdefault("veto_weight", VETO_DEFAULT_WEIGHT)
        return []
    comparison = compare_pairs(records, left, right, details=True)
    weights = model.field_weights(comparison.level)
    if adjustments is not None:
        weights = weights + adjustments
    if pending is None:
        pending = {
            (a, b): pk
            for pk, a, b in DuplicateCandidate.objects.filter(
                status=DuplicateCandidate.Status.PENDING
            ).values_list("pk", "profile_a_id", "profile_b_id")
        }
    result: list[DuplicateCandidate] = []
    evidence_of = _Evidence(records, comparison, weights)
    score_list = scores.tolist()
    for k, (i, j) in enumerate(zip(left.tolist(), right.tolist(), strict=True)):
        a, b = records.ids[i], records.ids[j]
        if b < a:
            a, b, i, j = b, a, j, i
        result.append(
            DuplicateCandidate(
                pk=pending.get((a, b)),
                profile_a_id=a,
                profile_b_id=b,
                score=round(score_list[k], 3),
                evidence=evidence_of(k, i, j),
                run=run,
            )
        )
    vetoed = np.array([bool(c.evidence["vetoes"]) for c in result])
    if "veto_weight" not in model.em:
        # Fitted once, by the full run; incremental runs reuse the saved model's,
        # so that both give one probability for one pair.
        model.em["veto_weight"] = veto_weight(model, scores, vetoed)
    probability_set(model, result)
    return result


def probability_set(model: Model, candidates: list[DuplicateCandidate]) -> None:
    """Each candidate's probability: its score, less the model's veto weight if a
    veto holds it (``automatic_select`` may add one after ``candidates_build``)."""
    if not candidates:
        return
    scores = np.array([c.score for c in candidates], dtype=float)
    vetoed = np.array([bool(c.evidence["vetoes"]) for c in candidates])
    weight = float(model.em.get("veto_weight", VETO_DEFAULT_WEIGHT))
    probability = model.probability(scores + weight * vetoed)
    for c, p in zip(candidates, probability.tolist(), strict=True):
        c.probability = p


# Below this many pairs on either side of a veto, its weight is not estimated.
VETO_EM_MIN_PAIRS = 20
VETO_DEFAULT_WEIGHT = -8.0


def veto_weight(model: Model, scores: np.ndarray, vetoed: np.ndarray) -> float:
    """How much a veto says, in the score's bits, for the probability shown: EM for
    one more binary field ("a veto holds the pair") over these pairs, with the
    model's own weights and prior held fixed. A veto keeps a pair from merging
    whatever its score; the probability should say how likely such pairs still
    are one person, not repeat the score. Pairs below the review bar's score are
    not among these (their vetoes are not computed), which overstates u and so
    errs towards the lower probability. Too few pairs: VETO_DEFAULT_WEIGHT."""
    fired = int(vetoed.sum())
    if fired < VETO_EM_MIN_PAIRS or len(vetoed) - fired < VETO_EM_MIN_PAIRS:
        return VETO_DEFAULT_WEIGHT
    lam = min(max(model.lam, 1e-12), 1 - 1e-12)
    base = scores + np.log2(lam / (1 - lam))
    weight = VETO_DEFAULT_WEIGHT
    for _ in range(100):
        post = 1.0 / (1.0 + np.exp2(-np.clip(base + weight * vetoed, -1000, 1000)))
        m = (post * vetoed).sum() / max(post.sum(), 1e-12)
        u = ((1 - post) * vetoed).sum() / max((1 - post).sum(), 1e-12)
        new = float(np.clip(np.log2(max(m, 1e-9) / max(u, 1e-9)), -MAX_VETO_BITS, 0.0))
        if abs(new - weight) < 1e-4:
            return new
        weight = new
    return weight


MAX_VETO_BITS = 30.0


_CANDIDATE_FIELDS = [
    "score",
    "probability",
    "evidence",
    "run",
    "status",
    "note",
    "merge",
    "decided_at",
    "updated_at",
]


def candidates_write(candidates: list[DuplicateCandidate]) -> None:
    now = timezone.now()
    for c in candidates:
        c.updated_at = now
    new = [c for c in candidates if c.pk is None]
    known = [c for c in candidates if c.pk is not None]  # before bulk_create sets pks
    with transaction.atomic():
        for start in range(0, len(new), 2000):
            bulk_insert(new[start : start + 2000])
        for start in range(0, len(known), 2000):
            bulk_set(known[start : start + 2000], _CANDIDATE_FIELDS)


def stale_pending_delete(run: DedupRun, records: Records, changed: np.ndarray | None) -> None:
    """Pending pairs of scanned profiles that no longer reach the review bar."""
    pending = DuplicateCandidate.objects.filter(status=DuplicateCandidate.Status.PENDING).exclude(
        run=run
    )
    if changed is None:
        pending.delete()
        return
    scanned = [pid for pid, c in zip(records.ids, changed.tolist(), strict=True) if c]
    for chunk in chunks(scanned, 2000):
        pending.filter(Q(profile_a_id__in=chunk) | Q(profile_b_id__in=chunk)).delete()


def dead_pending_delete() -> None:
    """Pending pairs whose profile was merged away: the survivor is compared anew."""
    DuplicateCandidate.objects.filter(status=DuplicateCandidate.Status.PENDING).filter(
        Q(profile_a__merged_into__isnull=False) | Q(profile_b__merged_into__isnull=False)
    ).delete()
