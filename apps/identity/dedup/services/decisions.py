"""Decisions on candidate pairs: automatic merges, and an admin's review."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.identity.models import ProfileMerge

from ..compare import ADDRESS_SAME
from ..fellegi_sunter import Model
from ..models import DedupRun, DuplicateCandidate
from .candidates import candidates_write
from .config import Progress

# Pairs per bulk merge and transaction. Each batch pays fixed queries (locks,
# identifiers, separations, each hook's reads) and a commit; 2,000 rather than 500
# cut the 100,000-record CRM run's 136 batches to 34 (the outcome does not depend
# on the batch size: each pair is decided on what the earlier pairs left).
MERGE_BATCH = 2000
FATHER_AND_SON = "would join, through other profiles, two of one name at one door kept apart"


def _one_name_at_one_door(candidate: DuplicateCandidate) -> bool:
    """A pair the vetoes kept apart although name and address agree exactly: as
    often a father and son as one person."""
    fields = candidate.evidence.get("fields", {})
    exact = all(
        fields.get(name, {}).get("level") == top
        for name, top in (("first_name", 3), ("last_name", 3), ("address", ADDRESS_SAME))
    )
    return exact and bool(candidate.evidence.get("vetoes"))


def _shared_contact(candidate: DuplicateCandidate) -> bool:
    """The pair shares its email or phone: evidence of its own, not a detour."""
    fields = candidate.evidence.get("fields", {})
    email = fields.get("email", {}).get("level", -1)
    phone = fields.get("phone", {}).get("level", -1)
    return email == 3 or phone >= 1


def automatic_select(
    candidates: list[DuplicateCandidate], auto_probability: float
) -> list[DuplicateCandidate]:
    """The pairs to merge automatically: at least ``auto_probability`` likely one
    person (``DuplicateCandidate.probability``, set by ``candidates_build``),
    without a veto, best score first; and, unless the pair shares an email or
    phone, none that would put into one profile, through pairs merged before it,
    two profiles of one name at one door the vetoes kept apart (a son and his
    father's duplicate with a typo in the name: what the rules do not merge
    directly, they do not merge by a detour). Such a pair gets that veto and waits
    for review."""
    kept_apart: dict[Any, set[Any]] = {}
    for c in candidates:
        if _one_name_at_one_door(c):
            kept_apart.setdefault(c.profile_a_id, set()).add(c.profile_b_id)
            kept_apart.setdefault(c.profile_b_id, set()).add(c.profile_a_id)
    cluster: dict[Any, Any] = {}
    members: dict[Any, list[Any]] = {}

    def find(pid: Any) -> Any:
        root = pid
        while cluster.get(root, root) != root:
            root = cluster[root]
        while cluster.get(pid, pid) != root:
            cluster[pid], pid = root, cluster[pid]
        return root

    selected = []
    for c in sorted(candidates, key=lambda c: -c.score):
        if c.probability < auto_probability or c.evidence.get("vetoes"):
            continue
        a, b = find(c.profile_a_id), find(c.profile_b_id)
        if a != b:
            side_a, side_b = members.get(a, [a]), members.get(b, [b])
            if len(side_a) > len(side_b):
                side_a, side_b, a, b = side_b, side_a, b, a
            others = set(side_b)
            detour = kept_apart and not _shared_contact(c)
            if detour and any(kept_apart.get(pid, set()) & others for pid in side_a):
                c.evidence["vetoes"] = [FATHER_AND_SON]
                continue
            cluster[a] = b
            members[b] = side_b + side_a
            members.pop(a, None)
        selected.append(c)
    return selected


# Pairs with more vetoes than this are not even queued for review.
QUEUE_MAX_VETOES = 1


def held_back(candidate: DuplicateCandidate, model: Model, auto_probability: float) -> bool:
    """Whether a veto kept the pair from an automatic merge: without the veto weight
    (``candidates.probability_set``) it would reach ``auto_probability``."""
    return candidate.score >= model.score_at(auto_probability)


def review_select(
    candidates: list[DuplicateCandidate],
    model: Model,
    *,
    auto_probability: float,
    review_probability: float,
) -> list[DuplicateCandidate]:
    """The candidates to keep for review (with the automatic ones, which the caller
    tells apart). Both bars are on the probability shown (``Model.probability``),
    the one the automatic merges use: pairs without a veto at least
    ``review_probability`` likely one person; vetoed pairs with at most one veto
    that the veto held back from an automatic merge (``held_back``), whatever their
    probability (a human decides what a veto held back).

    Two or more vetoes: different people (households, namesakes), nearly always;
    they would only crowd the review queue. So are vetoed pairs that would not have
    merged anyway: the veto held back nothing, and what it says (another mailbox
    or number) is evidence against. On bench/dedup.py's own generator (10,000
    records) they were 123 of the 293 queued pairs, 5 of them true; the CRM
    generator has none (no vetoes without contact fields)."""
    selected = []
    for c in candidates:
        vetoes = c.evidence["vetoes"]
        if vetoes:
            if len(vetoes) <= QUEUE_MAX_VETOES and held_back(c, model, auto_probability):
                selected.append(c)
        elif c.probability >= review_probability:
            selected.append(c)
    return selected


def auto_merge(
    run: DedupRun, candidates: list[DuplicateCandidate], progress: Progress
) -> tuple[int, int]:
    """Merge, best score first, by the rules of the safe merge path, a batch of pairs
    at a time (``profile_merge_bulk``); a batch and its candidate rows share one
    transaction. Returns (merged, refused)."""
    from apps.identity.services import MergeRequest, identity_rules_load, profile_merge_bulk

    rules = identity_rules_load()
    merged = refused = 0
    total = len(candidates)
    progress("merge", 0, total)
    for start in range(0, total, MERGE_BATCH):
        batch = candidates[start : start + MERGE_BATCH]
        now = timezone.now()
        with transaction.atomic():
            results = profile_merge_bulk(
                requests=[
                    MergeRequest(
                        profile_ids=(c.profile_a_id, c.profile_b_id),
                        details={
                            "score": c.score,
                            "probability": c.probability,
                            "evidence": c.evidence,
                            "dedup_run_id": run.pk,
                        },
                    )
                    for c in batch
                ],
                reason=ProfileMerge.Reason.MATCH_SCORE,
                rules=rules,
            )
            for candidate, result in zip(batch, results, strict=True):
                candidate.decided_at = now
                if result.refused:
                    candidate.status = DuplicateCandidate.Status.REFUSED
                    candidate.note = result.refused[:500]
                    refused += 1
                    continue
                candidate.status = DuplicateCandidate.Status.MERGED
                if result.already_one:
                    candidate.note = "Already one profile through other merged pairs."
                    continue
                candidate.merge = result.merge
                merged += 1
            candidates_write(batch)
        progress("merge", min(start + MERGE_BATCH, total), total)
    return merged, refused


@transaction.atomic
def duplicate_candidate_merge(
    *, candidate_id: int, actor: Any, force: bool = False
) -> DuplicateCandidate:
    """An admin merges a queued pair (through the safe merge path). A pair a safety
    rule refuses is recorded as refused, unless ``force`` (the caller checks the
    ``identity.force_merge_profile`` permission)."""
    from apps.identity.services import MergeRefused, profile_merge

    candidate = DuplicateCandidate.objects.select_for_update().get(pk=candidate_id)
    if candidate.status in (DuplicateCandidate.Status.MERGED, DuplicateCandidate.Status.REJECTED):
        return candidate
    candidate.decided_by = actor
    candidate.decided_at = timezone.now()
    try:
        candidate.merge = profile_merge(
            profile_ids=(candidate.profile_a_id, candidate.profile_b_id),
            reason=ProfileMerge.Reason.ADMIN,
            details={
                "score": candidate.score,
                "evidence": candidate.evidence,
                "candidate_id": candidate.pk,
            },
            actor=actor,
            force=force,
        )
        candidate.status = DuplicateCandidate.Status.MERGED
        candidate.note = ""
    except MergeRefused as exc:
        candidate.status = DuplicateCandidate.Status.REFUSED
        candidate.note = str(getattr(exc, "message", exc))[:500]
    candidate.save()
    return candidate


@transaction.atomic
def duplicate_candidate_reject(*, candidate_id: int, actor: Any) -> DuplicateCandidate:
    """ "Not the same person": remembered, so the pair is never proposed again."""
    candidate = DuplicateCandidate.objects.select_for_update().get(pk=candidate_id)
    if candidate.status == DuplicateCandidate.Status.MERGED:
        return candidate
    candidate.status = DuplicateCandidate.Status.REJECTED
    candidate.decided_by = actor
    candidate.decided_at = timezone.now()
    candidate.save(update_fields=["status", "decided_by", "decided_at", "updated_at"])
    return candidate
