#!/usr/bin/env python
"""Where the dedup benchmark's missed true pairs go, and the best recall any rule on
the same comparisons could reach.

Runs the product's matching (``apps.identity.dedup``: blocking, comparison, EM,
frequency weights, vetoes, ``automatic_select``) in memory over the records of
``bench/dedup.py``'s generator, without a database, so that it takes half a minute
at 100,000 records. Then:

1. Precision and recall of the automatic merges, as ``bench/dedup.py`` counts them
   (its figures differ by a pair or two: the database hands profiles over in
   another order).
2. Every missed true pair by why it was missed: never compared (no blocking key in
   common), below the review threshold, held back by a veto (which), or in the
   review band.
3. The ceiling: a pair's *pattern* is what the matcher knows of it (the agreement
   level of every field and the name flags: slip, nickname, swapped). The script
   counts, among the compared pairs the run left apart, the true and the false
   ones of each pattern, and merges every pattern with more true pairs than false
   ones, choosing with the labels. That is more than any rule could do without
   them, so the recall it reaches bounds that of every rule on these comparisons
   (at the precision it prints).

``--junior-share`` lowers the share of "juniors" (a son of his father's name at his
father's address; 1% of the records by default) to see how much of the shortfall
is theirs.

Run:  .venv/bin/python bench/dedup_ceiling.py --size 100000 --seed 7
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


class _Clusters:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def join(self, x: int, y: int) -> None:
        self.parent[self.find(x)] = self.find(y)

    def copy(self) -> _Clusters:
        other = _Clusters(0)
        other.parent = list(self.parent)
        return other


def _quality(clusters: _Clusters, entity: list[int], true_pairs: int) -> tuple[float, float, int]:
    members: dict[int, Counter[int]] = defaultdict(Counter)
    for row, e in enumerate(entity):
        members[clusters.find(row)][e] += 1
    predicted = correct = 0
    for counts in members.values():
        size = sum(counts.values())
        predicted += size * (size - 1) // 2
        correct += sum(c * (c - 1) // 2 for c in counts.values())
    precision = correct / predicted if predicted else 1.0
    return precision, correct / true_pairs, predicted - correct


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--junior-share", type=float, default=None)
    parser.add_argument(
        "--generator",
        choices=("own", "crm"),
        default="own",
        help="own: bench/dedup.py's records; crm: bench/dedup_gen2.py's CRM imports",
    )
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings.local")
    os.environ["DATABASE_URL"] = "sqlite:///:memory:"  # never queried
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from dedup import JUNIOR_SHARE, Generator

    from apps.identity.dedup.blocking import block_keys, candidate_pairs
    from apps.identity.dedup.compare import compare_pairs
    from apps.identity.dedup.fellegi_sunter import initial_model
    from apps.identity.dedup.frequency import frequencies_count
    from apps.identity.dedup.models import DedupConfig
    from apps.identity.dedup.records import BUILTIN_FIELDS, build_records
    from apps.identity.dedup.services.candidates import candidates_build
    from apps.identity.dedup.services.decisions import automatic_select, review_select
    from apps.identity.dedup.services.scoring import (
        EM_MIN_PAIRS,
        estimate_model,
        pairs_score,
        review_order,
        without_estimate,
    )

    def default(name: str) -> float:
        return DedupConfig._meta.get_field(name).default

    auto_probability = default("auto_merge_probability")
    review_probability = default("review_probability")
    share = JUNIOR_SHARE if args.junior_share is None else args.junior_share
    if not 0 <= share <= JUNIOR_SHARE:
        parser.error(f"--junior-share must be within 0 and {JUNIOR_SHARE}")

    start = time.perf_counter()
    if args.generator == "crm":
        from dedup_gen2 import CrmGenerator

        generated: list[Any] = CrmGenerator(size=args.size, seed=args.seed).records()
    else:
        generated = Generator(size=args.size, seed=args.seed, junior_share=share).records()
    entity = [r.entity for r in generated]
    ids = [uuid.UUID(int=(args.seed << 64) + n, version=4) for n in range(len(generated))]
    specs = BUILTIN_FIELDS
    rows = list(zip(ids, [r.traits for r in generated], strict=True))
    records = build_records(rows, specs)
    records.merged = np.zeros(len(records), dtype=bool)
    keys = block_keys(records)
    left, right, stats = candidate_pairs(
        keys, len(records), max_block_size=default("max_block_size")
    )
    # One comparison of every pair, with the name flags the ceiling reads too.
    compared_all = compare_pairs(records, left, right, details=True)
    level, swapped = compared_all.level, compared_all.swapped
    model = initial_model(specs)
    if len(level) >= EM_MIN_PAIRS:
        model = estimate_model(records, level, left * len(records) + right, stats, model)
    else:
        model = without_estimate(model)
    frequencies = frequencies_count(records, [s.name for s in specs if s.frequency_adjusted])
    scores, adjustments = pairs_score(records, left, right, level, swapped, model, frequencies)
    auto_threshold = model.score_at(auto_probability)  # the bars' scores, for the reports
    review_threshold = model.score_at(review_probability)
    order = review_order(scores, review_threshold)
    candidates = candidates_build(
        None, records, left[order], right[order], scores[order], model, adjustments[order],
        pending={},
    )  # fmt: skip
    merged = automatic_select(candidates, auto_probability)
    automatic = {id(c) for c in merged}
    queue = [
        c
        for c in review_select(
            candidates, model, auto_probability=auto_probability,
            review_probability=review_probability,
        )
        if id(c) not in automatic
    ]  # fmt: skip
    seconds = time.perf_counter() - start

    row_of = {pid: row for row, pid in enumerate(ids)}

    def rows_of(candidate: Any) -> tuple[int, int]:
        i, j = row_of[candidate.profile_a_id], row_of[candidate.profile_b_id]
        return min(i, j), max(i, j)

    queued = {rows_of(c): c for c in candidates}
    clusters = _Clusters(len(generated))
    for candidate in merged:
        clusters.join(*rows_of(candidate))
    by_entity: dict[int, list[int]] = defaultdict(list)
    for row, e in enumerate(entity):
        by_entity[e].append(row)
    true_pairs = [
        (members[x], members[y])
        for members in by_entity.values()
        for x in range(len(members))
        for y in range(x + 1, len(members))
    ]
    precision, recall, wrong = _quality(clusters, entity, len(true_pairs))
    roles = Counter(r.role for r in generated)
    print(
        f"dedup ceiling: {args.generator} generator, {args.size:,} records, seed {args.seed}, "
        f"junior share {share:.4f}"
    )
    print(f"records by role   {dict(roles)}")
    print(f"matching          {seconds:.1f} s in memory; {len(left):,} pairs compared")
    print(
        f"automatic merges  precision {precision:.4f}  recall {recall:.4f}  "
        f"({len(true_pairs):,} true pairs, {wrong} wrong pairs)"
    )

    print(
        f"bars              auto-merge p >= {auto_probability} (score {auto_threshold:.1f}), "
        f"review p >= {review_probability} (score {review_threshold:.1f}); prior "
        f"{np.log2(model.lam / (1 - model.lam)):.2f} bits"
    )
    for name, q in (("review queue", queue),):
        true_q = sum(entity[rows_of(c)[0]] == entity[rows_of(c)[1]] for c in q)
        print(
            f"{name:<17} {len(q):,} pairs = {1000 * len(q) / len(generated):.1f} per 1,000 "
            f"records, {true_q:,} true"
        )

    # Blocking recall: true pairs that became candidates.
    true_codes = {min(x, y) * len(generated) + max(x, y) for x, y in true_pairs}
    found = len(true_codes & set((left * len(generated) + right).tolist()))
    all_pairs = len(generated) * (len(generated) - 1) // 2
    print(
        f"blocking          {found / len(true_pairs):.4f} of true pairs are candidates; "
        f"{len(left):,} candidates = {len(left) / all_pairs:.5%} of n(n-1)/2"
    )
    # Each veto's evidence: pairs at or above the auto-merge threshold it holds back,
    # true ones (blocked) and wrong ones (prevented); and where it is the only veto.
    evidence: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for c in candidates:
        if c.score < auto_threshold:
            continue
        i, j = rows_of(c)
        true = entity[i] == entity[j]
        for veto in c.evidence["vetoes"]:
            row = evidence[veto]
            row[0 if true else 1] += 1
            if len(c.evidence["vetoes"]) == 1:
                row[2 if true else 3] += 1
    print("vetoes at or above the auto-merge threshold: true pairs blocked / wrong prevented")
    print("                  (as the only veto: blocked / prevented)")
    for veto, (blocked, prevented, alone_b, alone_p) in sorted(evidence.items()):
        print(f"  {blocked:6,} / {prevented:6,}   ({alone_b:,} / {alone_p:,})  {veto}")

    compared = {(int(i), int(j)): k for k, (i, j) in enumerate(zip(left, right, strict=True))}
    why: Counter[str] = Counter()
    for x, y in true_pairs:
        if clusters.find(x) == clusters.find(y):
            continue
        pair = (min(x, y), max(x, y))
        if pair not in compared:
            why["never compared (no blocking key in common)"] += 1
        elif pair not in queued:
            why["below the review threshold"] += 1
        elif queued[pair].evidence["vetoes"]:
            why["veto: " + "; ".join(queued[pair].evidence["vetoes"])] += 1
        else:
            why["in the review band"] += 1
    print(f"missed true pairs {sum(why.values()):,}")
    for reason, count in why.most_common():
        print(f"  {count:6,}  {reason}")

    # The ceiling: patterns the run left apart, merged where true pairs outnumber
    # false ones (chosen with the labels).
    flags = np.stack(
        [
            *(level[:, f] for f in range(level.shape[1])),
            compared_all.first_name_slip,
            compared_all.last_name_slip,
            compared_all.first_name_nickname,
            compared_all.first_name_nickname_typo,
            compared_all.email_mirrors_names,
            swapped,
        ],
        axis=1,
    ).astype(np.int8)
    patterns: dict[bytes, list[int]] = defaultdict(lambda: [0, 0])
    apart = []
    for k, (i, j) in enumerate(zip(left.tolist(), right.tolist(), strict=True)):
        if clusters.find(i) != clusters.find(j):
            key = flags[k].tobytes()
            patterns[key][0 if entity[i] == entity[j] else 1] += 1
            apart.append((k, i, j, key))
    best = clusters.copy()
    for _, i, j, key in apart:
        true_count, false_count = patterns[key]
        if true_count > false_count:
            best.join(i, j)
    best_precision, best_recall, best_wrong = _quality(best, entity, len(true_pairs))
    # True pairs left apart in patterns that are false at least as often.
    shared = sum(t for t, f in patterns.values() if t <= f)
    print(
        f"ceiling           recall {best_recall:.4f} at precision {best_precision:.4f} "
        f"({best_wrong} wrong pairs) if every pattern with more true pairs than false"
    )
    print(
        "                  merged too (chosen with the labels: no rule does better on these "
        "comparisons)"
    )
    print(f"                  {shared:,} missed true pairs are in patterns false at least as often")
    largest = sorted(patterns.items(), key=lambda kv: -kv[1][0])[:6]
    names = [s.name for s in specs]
    print("largest patterns of missed true pairs (true, false):")
    for key, (true_count, false_count) in largest:
        values = np.frombuffer(key, dtype=np.int8)
        shown = {n: int(v) for n, v in zip(names, values[: len(names)], strict=True)}
        marks = [
            m
            for m, v in zip(
                ("first slip", "last slip", "nickname", "nickname typo", "mirrors", "swapped"),
                values[len(names) :],
                strict=True,
            )
            if v
        ]
        print(f"  {true_count:5,} {false_count:6,}  {shown} {' '.join(marks)}")
    print(
        "levels: -1 missing, 0 different, higher is closer (3 exact; 2 for phone and birthday, "
        "4 for the address)"
    )


if __name__ == "__main__":
    main()
