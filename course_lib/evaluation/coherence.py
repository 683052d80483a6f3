"""Semantic coherence: are codes and code pairs used as real patients use them? (lesson 09)

Every metric here compares a synthetic cohort with real statistics; read each against its
real-vs-real floor (the same metric for a second, disjoint real sample), never alone.

**Jensen-Shannon.** ``P`` and ``Q`` are the code frequency distributions (every occurrence
counts, so a generator that repeats a code inflates it), ``M = (P + Q) / 2``::

    js_divergence = 0.5 * KL(P || M) + 0.5 * KL(Q || M)     (log base 2, in [0, 1])
    js_distance   = sqrt(js_divergence)                      (a metric, in [0, 1])

``scipy.spatial.distance.jensenshannon`` returns the *distance* (the square root), in nats
unless ``base=2``. The notes' "JS divergence 0.606" is most likely that scipy call with its
default base ``e``: it is the usual call in generation pipelines, and it is what a one-line
``jensenshannon(p, q)`` gives. Read so, it is a divergence of 0.606**2 = 0.367 nats = 0.530
bits, i.e. ``js_divergence`` 0.530 and ``js_distance`` 0.728 here. If it was a base-2 distance,
the divergence is 0.367 bits; if it was a base-2 divergence, the distance is 0.778. For
distributions that share a mass ``s`` exactly and differ elsewhere (disjoint supports) the
base-2 divergence is ``1 - s``, so the three readings mean 47%, 63% or 39% shared code mass;
the same run's top-100 overlap of 0.038 (the synthetic mass sits outside the real top codes)
is compatible with all three, so the argument rests on the usual call. Both are reported.

**Top-k overlap.** ``|topk(real) & topk(synthetic)| / k`` with codes ranked by frequency, ties
broken by code so the result is reproducible; ``k`` stays the denominator even when a cohort
has fewer than ``k`` codes (a 31-code generator cannot score above 31/k).

**Co-occurrence score and NPMI.** For every visit of the synthetic cohort and every unordered
pair ``{a, b}`` of distinct codes in it, ``C(a, b)`` is the number of visits of the statistics
cohort (the training split, else the real cohort) that contain both::

    cooccurrence_score = mean over generated pairs of ln(1 + C(a, b))
    npmi = mean over generated pairs of ln(p(a,b) / (p(a) p(b))) / -ln p(a,b)

with ``p`` = share of statistics visits containing the code(s); a pair never seen together
(including a pair with a code the statistics never saw) has NPMI -1, a pair present in every
visit +1. The notes' "co-occurrence score 3.39 (target > 20)" cannot be this log score (20
would need e^20 co-occurrences), so only the floor tells what a good value is.

**HALO fidelity R²** (Theodorou et al., 2023): ``sklearn.metrics.r2_score(real, synthetic)``
between real and synthetic probabilities of (1) unigrams: share of visits containing the code,
(2) within-visit pairs: share of visits containing both codes (unordered, distinct), and
(3) sequential pairs: share of consecutive-visit pairs (visit t, t+1 of one patient) with code
``a`` in visit t and ``b`` in visit t+1 (ordered; ``a == b`` allowed). The items are those
present in the real cohort (a synthetic-only item has real probability 0 and is left out: the
score measures how well real statistics are reproduced; mass wasted elsewhere lowers the
synthetic probabilities of real items and is penalised there).

**Demographic Jaccard.** Each synthetic patient is matched to the real patients of the same
sex and 10-year age band (age at the first visit; same sex, any age, if the band has none).
Its score is the Jaccard index ``|A & B| / |A | B|`` of code sets with its *best-matching* real
patient in that group; ``jaccard`` is the mean over synthetic patients. It asks "does the
generator, given this prompt, write a record that some real patient with this prompt could
have?". Best-match values grow with the real group size, so compare only against the floor
computed against the same real cohort.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.metrics import r2_score

from course_lib.cohort import Cohort
from course_lib.evaluation.encoding import (
    CodeIndex,
    VisitMatrix,
    age_band,
    patient_code_matrix,
    visit_code_matrix,
)
from course_lib.evaluation.uncertainty import remembered


def code_frequencies(cohort: Cohort) -> Counter[str]:
    """Occurrences of each code over all visits of all patients (repeats included)."""
    return Counter(code for patient in cohort for code in patient.codes)


def js_divergence(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Base-2 Jensen-Shannon divergence of two code -> count (or probability) maps, in [0, 1]."""
    codes = sorted(set(p) | set(q))
    p_values = np.array([p.get(code, 0.0) for code in codes], dtype=np.float64)
    q_values = np.array([q.get(code, 0.0) for code in codes], dtype=np.float64)
    if p_values.sum() <= 0 or q_values.sum() <= 0:
        raise ValueError("js_divergence needs two non-empty code distributions")
    p_values /= p_values.sum()
    q_values /= q_values.sum()
    middle = (p_values + q_values) / 2

    def kl_to_middle(values: np.ndarray) -> float:
        present = values > 0
        return float(np.sum(values[present] * np.log2(values[present] / middle[present])))

    divergence = 0.5 * kl_to_middle(p_values) + 0.5 * kl_to_middle(q_values)
    return float(min(max(divergence, 0.0), 1.0))


def js_distance(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """``sqrt(js_divergence)``: what ``scipy.spatial.distance.jensenshannon(..., base=2)`` returns."""
    return float(np.sqrt(js_divergence(p, q)))


def top_codes(counts: Mapping[str, float], k: int) -> list[str]:
    """The ``k`` most frequent codes, ties broken by code."""
    return [code for code, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]]


def top_k_overlap(real: Mapping[str, float], synthetic: Mapping[str, float], k: int = 100) -> float:
    """``|topk(real) & topk(synthetic)| / k``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return len(set(top_codes(real, k)) & set(top_codes(synthetic, k))) / k


@dataclass(frozen=True)
class CooccurrenceStats:
    """Within-visit counts of a statistics cohort (training split, else real).

    ``visit_counts[i]``: visits containing code ``i``; ``pair_counts``: ``[n_codes, n_codes]``
    symmetric counts of visits containing both codes, zero diagonal.
    """

    index: CodeIndex
    n_visits: int
    visit_counts: np.ndarray
    pair_counts: sparse.csr_matrix

    @classmethod
    def from_cohort(cls, cohort: Cohort) -> CooccurrenceStats:
        index = CodeIndex.from_cohorts(cohort)
        visits = visit_code_matrix(cohort, index).codes
        pair_counts = (visits.T @ visits).tocsr()
        pair_counts.setdiag(0)
        pair_counts.eliminate_zeros()
        visit_counts = np.asarray(visits.sum(axis=0)).ravel()
        return cls(index, visits.shape[0], visit_counts, pair_counts)

    def npmi_matrix(self) -> sparse.csr_matrix:
        """NPMI of every pair seen together at least once (same sparsity as ``pair_counts``)."""
        counts = self.pair_counts.tocoo()
        p_pair = counts.data / self.n_visits
        p_first = self.visit_counts[counts.row] / self.n_visits
        p_second = self.visit_counts[counts.col] / self.n_visits
        pmi = np.log(p_pair / (p_first * p_second))
        with np.errstate(divide="ignore", invalid="ignore"):
            npmi = np.where(p_pair >= 1.0, 1.0, pmi / -np.log(p_pair))
        return sparse.csr_matrix((npmi, (counts.row, counts.col)), shape=counts.shape)


def _generated_pair_count(cohort: Cohort) -> int:
    total = 0
    for patient in cohort:
        for visit in patient.visits:
            distinct = len(set(visit.codes))
            total += distinct * (distinct - 1) // 2
    return total


def _sum_over_pairs(visits: sparse.csr_matrix, pair_values: sparse.csr_matrix) -> float:
    """Sum of ``pair_values[a, b]`` over the unordered distinct pairs of every visit row."""
    # s_v^T W s_v counts each unordered pair twice when W is symmetric with zero diagonal.
    return float((visits @ pair_values).multiply(visits).sum()) / 2


def pair_scores(synthetic: Cohort, stats: CooccurrenceStats) -> dict[str, float]:
    """``cooccurrence_score`` and ``npmi`` of the synthetic within-visit pairs (NaN if none)."""
    n_pairs = _generated_pair_count(synthetic)
    if n_pairs == 0:
        return {"cooccurrence_score": float("nan"), "npmi": float("nan")}
    visits = visit_code_matrix(synthetic, stats.index).codes
    log_counts = stats.pair_counts.copy()
    log_counts.data = np.log1p(log_counts.data)
    seen_together = stats.pair_counts.copy()
    seen_together.data[:] = 1.0
    n_seen = _sum_over_pairs(visits, seen_together)
    npmi_sum = _sum_over_pairs(visits, stats.npmi_matrix())
    return {
        "cooccurrence_score": _sum_over_pairs(visits, log_counts) / n_pairs,
        "npmi": (npmi_sum - (n_pairs - n_seen)) / n_pairs,
    }


def _halo_counts(visits: VisitMatrix) -> tuple[np.ndarray, sparse.csr_matrix, sparse.csr_matrix]:
    codes = visits.codes
    unigram = np.asarray(codes.sum(axis=0)).ravel()
    pairs = sparse.triu(codes.T @ codes, k=1).tocsr()
    starts = visits.next_visit_rows
    sequential = (codes[starts].T @ codes[starts + 1]).tocsr()
    return unigram, pairs, sequential


def _r2_on_real_items(
    real_counts: sparse.csr_matrix, real_total: int, syn_counts: sparse.csr_matrix, syn_total: int
) -> float:
    real_items = real_counts.tocoo()
    if real_total == 0 or real_items.nnz < 2:
        return float("nan")
    real_probs = real_items.data / real_total
    syn_values = np.asarray(syn_counts[real_items.row, real_items.col]).ravel()
    syn_probs = syn_values / syn_total if syn_total else np.zeros_like(real_probs)
    return float(r2_score(real_probs, syn_probs))


def fidelity_r2(synthetic: Cohort, real: Cohort) -> dict[str, float]:
    """HALO's ``unigram_r2``, ``pair_r2`` and ``sequential_r2`` (see the module docstring)."""
    index = CodeIndex.from_cohorts(real, synthetic)
    real_visits = visit_code_matrix(real, index)
    syn_visits = visit_code_matrix(synthetic, index)
    real_uni, real_pairs, real_seq = _halo_counts(real_visits)
    syn_uni, syn_pairs, syn_seq = _halo_counts(syn_visits)
    n_real, n_syn = real_visits.codes.shape[0], syn_visits.codes.shape[0]
    present = real_uni > 0
    if present.sum() >= 2 and n_real and n_syn:
        unigram = float(r2_score(real_uni[present] / n_real, syn_uni[present] / n_syn))
    else:
        unigram = float("nan")
    n_real_seq, n_syn_seq = len(real_visits.next_visit_rows), len(syn_visits.next_visit_rows)
    return {
        "unigram_r2": unigram,
        "pair_r2": _r2_on_real_items(real_pairs, n_real, syn_pairs, n_syn),
        "sequential_r2": _r2_on_real_items(real_seq, n_real_seq, syn_seq, n_syn_seq),
    }


def demographic_jaccard(synthetic: Cohort, real: Cohort, band_years: int = 10) -> float:
    """Mean best-match Jaccard to real patients of the same sex and age band (module docstring)."""
    index = CodeIndex.from_cohorts(real, synthetic)
    syn_matrix = patient_code_matrix(synthetic, index)
    real_matrix = patient_code_matrix(real, index)
    syn_sizes = np.asarray(syn_matrix.sum(axis=1)).ravel()
    real_sizes = np.asarray(real_matrix.sum(axis=1)).ravel()
    real_groups: dict[tuple[str, int], list[int]] = {}
    real_by_sex: dict[str, list[int]] = {}
    for row, patient in enumerate(real):
        real_groups.setdefault((patient.sex, age_band(patient.age, band_years)), []).append(row)
        real_by_sex.setdefault(patient.sex, []).append(row)
    syn_groups: dict[tuple[str, int], list[int]] = {}
    for row, patient in enumerate(synthetic):
        syn_groups.setdefault((patient.sex, age_band(patient.age, band_years)), []).append(row)
    best_scores: list[np.ndarray] = []
    for (sex, band), syn_rows in syn_groups.items():
        real_rows = real_groups.get((sex, band)) or real_by_sex.get(sex)
        if not real_rows:
            continue
        shared = (syn_matrix[syn_rows] @ real_matrix[real_rows].T).toarray()
        union = syn_sizes[syn_rows, None] + real_sizes[None, real_rows] - shared
        with np.errstate(divide="ignore", invalid="ignore"):
            jaccard = np.where(union > 0, shared / union, 1.0)
        best_scores.append(jaccard.max(axis=1))
    if not best_scores:
        return float("nan")
    return float(np.concatenate(best_scores).mean())


def coherence_metrics(
    synthetic: Cohort, real: Cohort, *, stats: CooccurrenceStats | None = None, k: int = 100
) -> dict[str, float]:
    """All coherence metrics of ``synthetic`` against ``real`` (pair statistics from ``stats``,
    built from ``real`` when not given)."""
    stats = stats if stats is not None else CooccurrenceStats.from_cohort(real)
    real_counts = remembered(real, "code_frequencies", code_frequencies)
    syn_counts = code_frequencies(synthetic)
    if not real_counts:
        raise ValueError("coherence_metrics needs a real cohort with at least one code")
    # A generator that writes no code at all (early in training) has no distribution: NaN.
    divergence = js_divergence(real_counts, syn_counts) if syn_counts else math.nan
    return {
        "js_divergence": divergence,
        "js_distance": float(np.sqrt(divergence)),
        f"top{k}_overlap": top_k_overlap(real_counts, syn_counts, k),
        **pair_scores(synthetic, stats),
        **fidelity_r2(synthetic, real),
        "jaccard": demographic_jaccard(synthetic, real),
    }
