"""Fellegi-Sunter match weights, estimated without labels by EM.

For each field and agreement level k, m_k = P(level k | same person) and
u_k = P(level k | different people). A pair's score is the sum over fields of
log2(m_k / u_k) for the level it reached (a missing value adds 0): its log-odds of
being one person, up to the prior. EM fits m, u and the share of true matches
(lambda) to the candidate pairs, treating the fields as independent given the
match status; fields whose probabilities or weights an admin set stay fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .compare import DEFAULT_M, DEFAULT_U, LEVELS, LevelArray
from .records import FieldSpec

EPS = 1e-6
MISSING_LEVEL = -1
M_FLOOR = 1e-3
# A weight beyond this says more than any one field can (and EM on a few pairs
# happily produces infinities).
MAX_WEIGHT = 20.0
# The match probability shown is kept within these (see ``Model.probability``).
PROBABILITY_MIN = 0.001
PROBABILITY_MAX = 0.999

FloatArray = npt.NDArray[np.float64]


@dataclass
class FieldParameters:
    name: str
    comparator: str
    m: FloatArray
    u: FloatArray
    source: str  # "em", "manual", "default", "weights"
    fixed_weights: FloatArray | None = None

    @property
    def levels(self) -> int:
        return len(self.m)

    def weights(self) -> FloatArray:
        if self.fixed_weights is not None:
            return self.fixed_weights
        w = np.log2(np.maximum(self.m, EPS) / np.maximum(self.u, EPS))
        # More agreement is never less evidence (EM noise can invert neighbours).
        w = np.maximum.accumulate(w)
        return np.clip(w, -MAX_WEIGHT, MAX_WEIGHT)

    def as_dict(self) -> dict[str, Any]:
        return {
            "comparator": self.comparator,
            "m": [round(float(x), 6) for x in self.m],
            "u": [round(float(x), 6) for x in self.u],
            "weights": [round(float(x), 3) for x in self.weights()],
            "source": self.source,
        }


@dataclass
class Model:
    fields: list[FieldParameters]
    lam: float = 0.01
    em: dict[str, Any] = field(default_factory=dict)

    def weight_table(self) -> FloatArray:
        """(fields x (1 + max levels)) weights; column 0 is 'missing' (weight 0)."""
        width = 1 + max((f.levels for f in self.fields), default=1)
        table = np.zeros((len(self.fields), width))
        for i, f in enumerate(self.fields):
            table[i, 1 : 1 + f.levels] = f.weights()
        return table

    def field_weights(self, level: LevelArray) -> FloatArray:
        table = self.weight_table()
        cols = np.arange(len(self.fields))
        return table[cols[None, :], level.astype(np.int64) + 1]

    def score(self, level: LevelArray) -> FloatArray:
        if len(self.fields) == 0:
            return np.zeros(len(level))
        return self.field_weights(level).sum(axis=1)

    def probability(self, score: FloatArray) -> FloatArray:
        """P(one person | the pair's levels): the score plus the prior log-odds
        (``lam``, the share of matches among all pairs), clipped to
        [PROBABILITY_MIN, PROBABILITY_MAX]: past those no benchmark of ours can
        check it, and the model's independence of fields overstates certainty.

        The prior is over all pairs because the weights compare m with the u of
        random pairs (``estimate_u``); EM estimates it among the candidate pairs
        (``estimate_lambda``) and ``scoring.with_prior`` scales it to all pairs. So
        one score is a smaller probability among more profiles, and must be: the
        chance namesakes born on one day grow as n², the duplicates as n. A prior
        among the candidates with these weights would count the blocking twice
        (bench/README.md, CRM records at 100,000: 12 bits more, p >= 0.999 for
        every pair scoring 12 or more, among them the 6,610 pairs this posterior
        puts at 0.1-0.5, of which 12.5 % are one person)."""
        lam = min(max(self.lam, 1e-12), 1 - 1e-12)
        prior = np.log2(lam / (1 - lam))
        p = 1.0 / (1.0 + np.exp2(-(np.asarray(score, dtype=float) + prior)))
        return np.clip(p, PROBABILITY_MIN, PROBABILITY_MAX)

    def score_at(self, probability: float) -> float:
        """The score at which a pair without a veto reaches ``probability``: the
        inverse of ``probability`` (without its clipping). Both decisions of a run
        are bars on the probability; this is the score each bar means for the run's
        prior, so that pairs below the lower one need not even be built."""
        lam = min(max(self.lam, 1e-12), 1 - 1e-12)
        p = min(max(probability, 1e-12), 1 - 1e-12)
        return float(np.log2(p / (1 - p)) - np.log2(lam / (1 - lam)))

    def as_dict(self) -> dict[str, Any]:
        return {
            # Unrounded: among millions of profiles it is ~1e-7 (rounded to six
            # places it would be 0, and every probability of an incremental run
            # PROBABILITY_MIN).
            "lambda": float(self.lam),
            "fields": {f.name: f.as_dict() for f in self.fields},
            "em": self.em,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], specs: tuple[FieldSpec, ...]) -> Model:
        """Parameters saved by an earlier run; fields it did not know get defaults."""
        saved = data.get("fields", {})
        base = initial_model(specs)
        for f in base.fields:
            old = saved.get(f.name)
            if f.source in ("manual", "weights") or not old:
                continue
            if old.get("comparator") != f.comparator or len(old.get("m", [])) != f.levels:
                continue
            f.m, f.u, f.source = np.array(old["m"]), np.array(old["u"]), old["source"]
        base.lam = float(data.get("lambda", base.lam))
        base.em = dict(data.get("em", {}))
        return base


def initial_model(specs: tuple[FieldSpec, ...]) -> Model:
    fields = []
    for spec in specs:
        levels = len(LEVELS[spec.comparator])
        if spec.weights is not None:
            w = np.array(spec.weights, dtype=float)
            fields.append(
                FieldParameters(
                    spec.name,
                    spec.comparator,
                    np.array(DEFAULT_M[spec.comparator]),
                    np.array(DEFAULT_U[spec.comparator]),
                    "weights",
                    fixed_weights=w,
                )
            )
        elif spec.m is not None and spec.u is not None:
            fields.append(
                FieldParameters(
                    spec.name, spec.comparator, np.array(spec.m), np.array(spec.u), "manual"
                )
            )
        else:
            m, u = DEFAULT_M[spec.comparator], DEFAULT_U[spec.comparator]
            assert len(m) == levels
            fields.append(
                FieldParameters(spec.name, spec.comparator, np.array(m), np.array(u), "default")
            )
    return Model(fields)


def estimate_u(level: LevelArray, model: Model, *, smoothing: float = 0.5) -> Model:
    """u from the levels of random pairs (pairs x fields): nearly all random pairs
    are two different people, so their agreement rates are u. (EM's u on blocked
    pairs would be far too high for the blocking fields: every pair in a birthday
    block agrees on the birthday.)"""
    fields = []
    for i, f in enumerate(model.fields):
        if f.source in ("manual", "weights"):
            fields.append(f)
            continue
        observed = level[:, i][level[:, i] >= 0].astype(np.int64)
        counts = np.bincount(observed, minlength=f.levels)[: f.levels] + smoothing
        fields.append(FieldParameters(f.name, f.comparator, f.m, counts / counts.sum(), f.source))
    return Model(fields, lam=model.lam, em={**model.em, "u_pairs": len(level)})


def estimate(
    level: LevelArray,
    model: Model,
    *,
    max_iterations: int = 100,
    tolerance: float = 1e-5,
    lam: float = 0.05,
    update_u: bool = True,
) -> Model:
    """EM on the candidate pairs' levels (pairs x fields). Returns a new model whose
    free fields carry estimated m (and u, with ``update_u``; source "em")."""
    n, k = level.shape
    if n == 0 or k == 0:
        return model
    free = [i for i, f in enumerate(model.fields) if f.source not in ("manual", "weights")]
    m = [f.m.astype(float).copy() for f in model.fields]
    u = [f.u.astype(float).copy() for f in model.fields]
    codes = level.astype(np.int64)
    present = [codes[:, i] >= 0 for i in range(k)]
    fixed_w = [
        model.fields[i].fixed_weights if model.fields[i].source == "weights" else None
        for i in range(k)
    ]
    converged = False
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007
        # E step: P(match | levels), in log space.
        log_ratio = np.zeros(n)
        for i in range(k):
            if fixed_w[i] is not None:
                table = np.r_[0.0, np.asarray(fixed_w[i]) * np.log(2)]
            else:
                table = np.r_[0.0, np.log(np.maximum(m[i], EPS)) - np.log(np.maximum(u[i], EPS))]
            log_ratio += table[codes[:, i] + 1]
        log_prior = np.log(max(lam, EPS)) - np.log(max(1 - lam, EPS))
        post = 1.0 / (1.0 + np.exp(-np.clip(log_ratio + log_prior, -700, 700)))
        # M step.
        new_lam = float(post.mean())
        delta = abs(new_lam - lam)
        lam = min(max(new_lam, EPS), 1 - EPS)
        for i in free:
            levels = len(m[i])
            rows = present[i]
            observed = codes[rows, i]
            p = post[rows]
            m_counts = np.bincount(observed, weights=p, minlength=levels) + EPS
            new_m = m_counts / m_counts.sum()
            new_u = u[i]
            if update_u:
                u_counts = np.bincount(observed, weights=1 - p, minlength=levels) + EPS
                new_u = u_counts / u_counts.sum()
            delta = max(delta, float(np.abs(new_m - m[i]).max()), float(np.abs(new_u - u[i]).max()))
            m[i], u[i] = new_m, new_u
        if delta < tolerance:
            converged = True
            break
    fields = []
    for i, f in enumerate(model.fields):
        if i in free:
            fields.append(FieldParameters(f.name, f.comparator, m[i], u[i], "em"))
        else:
            fields.append(f)
    result = Model(
        fields,
        lam=lam,
        em={**model.em, "iterations": iterations, "converged": converged, "pairs": n},
    )
    return _sane(result, model)


def _sane(estimated: Model, prior: Model) -> Model:
    """EM finds *a* two-class split; keep it only where it is the match/non-match
    one: exact agreement must be evidence for a match on every estimated field."""
    for i, f in enumerate(estimated.fields):
        if f.source != "em":
            continue
        if f.m[-1] <= f.u[-1] or f.m[0] >= f.u[0]:
            fallback = prior.fields[i]
            estimated.fields[i] = FieldParameters(
                f.name, f.comparator, fallback.m, fallback.u, "default"
            )
            estimated.em.setdefault("rejected_fields", []).append(f.name)
    return estimated


def estimate_sessions(sessions: list[tuple[str, LevelArray, list[int]]], model: Model) -> Model:
    """m by EM, one session per blocking pass, as Splink does.

    Pairs found by one pass (say, same birthday) are a population where matches are
    common enough for EM to find them; the fields that pass blocked on agree for
    every pair there, so they say nothing and are masked. Each field's m is the
    mean over the sessions that estimated it; u is left as it is (see
    ``estimate_u``)."""
    estimates: dict[int, list[FloatArray]] = {}
    report: dict[str, Any] = {}
    for name, level, masked in sessions:
        if len(level) == 0:
            continue
        masked_level = level.copy()
        masked_level[:, masked] = MISSING_LEVEL
        fitted = estimate(masked_level, model)
        used = [i for i, f in enumerate(fitted.fields) if i not in masked and f.source == "em"]
        for i in used:
            estimates.setdefault(i, []).append(fitted.fields[i].m)
        report[name] = {
            "pairs": len(level),
            "lambda": round(fitted.lam, 5),
            "iterations": fitted.em.get("iterations"),
            "fields": [fitted.fields[i].name for i in used],
            "rejected": fitted.em.get("rejected_fields", []),
            # u among this pass's pairs (two people who share its key): what
            # ``door_weights`` reads for the pairs at one door.
            "u": {
                fitted.fields[i].name: [round(float(x), 6) for x in fitted.fields[i].u]
                for i in used
            },
        }
    fields = []
    for i, f in enumerate(model.fields):
        if f.source in ("manual", "weights") or i not in estimates:
            fields.append(f)
            continue
        # No level is impossible for one person (a wrong birthday happens): a floor
        # keeps a single disagreement from outweighing everything else.
        m = np.maximum(np.mean(estimates[i], axis=0), M_FLOOR)
        fields.append(FieldParameters(f.name, f.comparator, m / m.sum(), f.u, "em"))
    return Model(fields, lam=model.lam, em={**model.em, "sessions": report})


def estimate_lambda(level: LevelArray, model: Model, *, iterations: int = 50) -> Model:
    """The share of matches among the candidates, with m and u held fixed."""
    if len(level) == 0:
        return model
    log_ratio = model.score(level) * np.log(2)
    lam = 0.05
    for _ in range(iterations):
        prior = np.log(lam) - np.log(1 - lam)
        post = 1.0 / (1.0 + np.exp(-np.clip(log_ratio + prior, -700, 700)))
        lam = float(min(max(post.mean(), EPS), 1 - EPS))
    return Model(model.fields, lam=lam, em=model.em)
