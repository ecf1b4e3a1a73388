"""Streaming, mergeable error statistics between a reference tensor and a candidate tensor.

Every accumulator here consumes one batch at a time (:meth:`update`), keeps only sums, counts and fixed
histograms (memory independent of the number of samples; :meth:`ErrorStats.update` works on blocks of
:data:`_BLOCK` elements, so its working memory does not depend on the tensor's size either, and its sums are
those of ``np.sum`` over the whole batch, bit for bit: :mod:`~fp8conv.verification.pairwise`), and two
accumulators fed different batches
:meth:`merge` into the one that would have seen all of them — ``a.update(x); b.update(y); a.merge(b)``
equals one accumulator fed ``x`` and then ``y`` (up to float64 summation order).

Definitions, with ``r`` the reference and ``c`` the candidate, summed over all finite element pairs:

* SQNR (dB) ``= 10·log10(Σr² / Σ(r−c)²)``: +inf when ``c == r`` exactly, −inf when ``r`` is all zero
  and ``c`` is not.
* relative error ``= ‖r−c‖ / ‖r‖ = 10^(−SQNR/20)``.
* cosine ``= Σr·c / (‖r‖·‖c‖)``: 1 when both are zero, 0 when exactly one is.
* max / mean absolute error ``= max|r−c|``, ``Σ|r−c| / n``.
* non-finite handling: an element pair where either side is NaN or ±Inf is left out of the sums. Pairs
  that agree (both NaN, or the same infinity) are counted in ``nonfinite_matched``; pairs that disagree
  (a NaN or Inf on one side only, or opposite infinities) in ``nonfinite_mismatch`` — a candidate that
  produces NaN where the reference does not is an error the gates report, never silently averaged.
* ``|r−c|`` histogram: fixed log-spaced bins (:data:`HISTOGRAM_EDGES`, 4 per decade from 1e-12 to 1e6)
  plus counts of exact zeros, below-range and above-range errors, so histograms merge by addition.

Classifier outputs (:class:`TopKAgreement`, :class:`LabelAccuracy`): an output is a classifier output when
it is rank 2, ``[N, C]`` with ``N`` the batch's sample count and ``C ≥ 2`` classes (:func:`is_classifier`).
Top-k agreement is the fraction of samples whose reference top-1 class is among the candidate's top k,
ties counted in the candidate's favour (a class whose score equals the k-th largest score is in the top k;
a row with a NaN score never agrees):
``agree_k = mean_i[c_i[argmax r_i] ≥ kth_largest(c_i)]``. With labels, accuracy is top-1 accuracy
``mean_i[argmax y_i == label_i]`` of each model and the drop is ``100·(acc_ref − acc_cand)`` percentage
points. Rate bounds use the Wilson score interval (:func:`wilson_lower_bound`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fp8conv.verification.pairwise import combine, leaves

__all__ = [
    "HISTOGRAM_EDGES",
    "ErrorStats",
    "LabelAccuracy",
    "TopKAgreement",
    "is_classifier",
    "sqnr_db",
    "wilson_lower_bound",
]

_FIRST_DECADE = -12
_LAST_DECADE = 6
_BINS_PER_DECADE = 4
HISTOGRAM_EDGES: np.ndarray = 10.0 ** (
    _FIRST_DECADE + np.arange((_LAST_DECADE - _FIRST_DECADE) * _BINS_PER_DECADE + 1) / _BINS_PER_DECADE
)
"""Bin edges of the ``|r−c|`` histograms: 10^-12 … 10^6, four bins per decade (72 bins); bin ``i`` holds
``edges[i] ≤ |r−c| < edges[i+1]``."""

_BLOCK = 1 << 15
"""Elements per block of :meth:`ErrorStats.update` (four float64 work arrays of it stay in a core's cache)."""
_TINIEST = float(np.finfo(np.float64).smallest_subnormal)


def sqnr_db(signal_energy: float, noise_energy: float) -> float:
    """``10·log10(signal_energy / noise_energy)`` with the limits made explicit.

    Args:
        signal_energy: ``Σr²``.
        noise_energy: ``Σ(r−c)²``.

    Returns:
        The SQNR in dB; ``inf`` when ``noise_energy`` is 0 (identical tensors), ``-inf`` when only
        ``signal_energy`` is 0.
    """
    if noise_energy == 0.0:
        return math.inf
    if signal_energy == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / noise_energy)


def wilson_lower_bound(successes: float, trials: int, z: float = 1.6448536269514722) -> float:
    """One-sided lower confidence bound of a binomial rate (Wilson score interval).

    ``(p + z²/2n − z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = successes / trials``; the default
    ``z`` gives a 95 % one-sided bound.

    Args:
        successes: Number of events (e.g. flipped predictions); clipped to ``[0, trials]``.
        trials: Number of samples.
        z: Standard-normal quantile of the confidence level.

    Returns:
        The bound in [0, 1]; 0 for no trials.
    """
    if trials <= 0:
        return 0.0
    p = min(max(successes, 0.0), trials) / trials
    z2n = z * z / trials
    center = p + z2n / 2.0
    spread = z * math.sqrt(p * (1.0 - p) / trials + z2n / (4.0 * trials))
    return max(0.0, (center - spread) / (1.0 + z2n))


def is_classifier(array: np.ndarray, batch_samples: int) -> bool:
    """Whether an output looks like classifier scores: ``[N, C]`` with N the batch's samples and C ≥ 2."""
    return (
        array.ndim == 2
        and array.shape[0] == batch_samples
        and array.shape[1] >= 2
        and np.issubdtype(array.dtype, np.floating)
    )


@dataclasses.dataclass
class ErrorStats:
    """Streaming error statistics of a candidate tensor against a reference tensor.

    Attributes:
        count: Finite element pairs summed.
        sum_ref_sq: ``Σr²``.
        sum_cand_sq: ``Σc²``.
        sum_err_sq: ``Σ(r−c)²``.
        sum_dot: ``Σr·c``.
        sum_abs_err: ``Σ|r−c|``.
        max_abs_err: ``max|r−c|`` (0 before any data).
        ref_min: Smallest finite reference value (+inf before any data).
        ref_max: Largest finite reference value (−inf before any data).
        nonfinite_matched: Pairs where both sides are the same NaN/Inf.
        nonfinite_mismatch: Pairs where exactly one side is non-finite or the infinities differ.
        zero_errors: Pairs with ``r == c`` exactly.
        histogram: Counts of ``|r−c| > 0`` per bin of :data:`HISTOGRAM_EDGES`; values below the first
            edge go to ``underflow``, above the last to ``overflow``.
        underflow: Non-zero errors below 1e-12.
        overflow: Errors of 1e6 and more.
    """

    count: int = 0
    sum_ref_sq: float = 0.0
    sum_cand_sq: float = 0.0
    sum_err_sq: float = 0.0
    sum_dot: float = 0.0
    sum_abs_err: float = 0.0
    max_abs_err: float = 0.0
    ref_min: float = math.inf
    ref_max: float = -math.inf
    nonfinite_matched: int = 0
    nonfinite_mismatch: int = 0
    zero_errors: int = 0
    histogram: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(len(HISTOGRAM_EDGES) - 1, dtype=np.int64)
    )
    underflow: int = 0
    overflow: int = 0

    def update(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        """Add one batch.

        The sums are float64 ``np.sum`` of the element-wise float64 quantities over the whole batch; they are
        computed one cache-sized block at a time (:mod:`~fp8conv.verification.pairwise`: the same bits).

        Args:
            reference: Reference values.
            candidate: Candidate values, same shape.

        Raises:
            ValueError: The shapes differ.
        """
        if np.shape(reference) != np.shape(candidate):
            raise ValueError(f"shapes differ: reference {np.shape(reference)}, candidate {np.shape(candidate)}")
        r = np.asarray(reference).reshape(-1)
        c = np.asarray(candidate).reshape(-1)
        if r.size == 0:
            return
        if not self._update_blocked(r, c):
            self._update_filtered(r, c)

    def _update_blocked(self, r: np.ndarray, c: np.ndarray) -> bool:
        """Add a batch of finite pairs in cache-sized blocks; False (nothing added) when a sum is not finite.

        A non-finite ``Σr²`` or ``Σc²`` means a non-finite element (or, for float64 data, a square beyond the
        float64 range): :meth:`_update_filtered` then handles the batch.
        """
        n = r.size
        size = min(n, _BLOCK)
        ref, cand, err, work = (np.empty(size) for _ in range(4))
        bins = len(self.histogram)
        counts = np.zeros(bins + 2, dtype=np.int64)  # [below range (and zeros), bins..., above range]
        zeros = 0
        largest = 0.0
        parts = []
        for start, length in leaves(n, _BLOCK):
            x, y, e, t = ref[:length], cand[:length], err[:length], work[:length]
            np.copyto(x, r[start : start + length])
            np.copyto(y, c[start : start + length])
            sums = np.empty(5)
            sums[0] = np.multiply(x, x, out=t).sum()
            sums[1] = np.multiply(y, y, out=t).sum()
            if not (math.isfinite(sums[0]) and math.isfinite(sums[1])):
                return False
            sums[2] = np.multiply(x, y, out=t).sum()
            np.subtract(x, y, out=e)
            sums[3] = np.multiply(e, e, out=t).sum()
            np.abs(e, out=e)
            sums[4] = e.sum()
            parts.append(sums)
            largest = max(largest, float(e.max()))
            zeros += length - int(np.count_nonzero(e))
            # bin = floor((log10|e| - first decade) · bins per decade), as _update_filtered computes it; exact
            # zeros become the smallest subnormal, far below the range, and are taken out of it again.
            np.maximum(e, _TINIEST, out=t)
            np.log10(t, out=t)
            np.subtract(t, _FIRST_DECADE, out=t)
            np.multiply(t, _BINS_PER_DECADE, out=t)
            np.floor(t, out=t)
            np.add(t, 1.0, out=t)
            np.clip(t, 0.0, bins + 1.0, out=t)
            counts += np.bincount(t.astype(np.intp), minlength=bins + 2)
        totals = combine(n, _BLOCK, iter(parts)).tolist()
        sum_ref_sq, sum_cand_sq, sum_dot, sum_err_sq, sum_abs_err = totals
        if not (math.isfinite(sum_ref_sq) and math.isfinite(sum_cand_sq)):
            return False
        self.count += n
        self.sum_ref_sq += sum_ref_sq
        self.sum_cand_sq += sum_cand_sq
        self.sum_err_sq += sum_err_sq
        self.sum_dot += sum_dot
        self.sum_abs_err += sum_abs_err
        self.max_abs_err = max(self.max_abs_err, largest)
        self.ref_min = min(self.ref_min, float(r.min()))
        self.ref_max = max(self.ref_max, float(r.max()))
        self.zero_errors += zeros
        self.underflow += int(counts[0]) - zeros
        self.overflow += int(counts[-1])
        self.histogram += counts[1:-1]
        return True

    def _update_filtered(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        """Add a batch with non-finite pairs: those are counted, the finite ones summed over the whole batch."""
        r = np.asarray(reference, dtype=np.float64)
        c = np.asarray(candidate, dtype=np.float64)
        finite = np.isfinite(r) & np.isfinite(c)
        if not finite.all():
            bad_r, bad_c = r[~finite], c[~finite]
            same = (np.isnan(bad_r) & np.isnan(bad_c)) | (bad_r == bad_c)
            self.nonfinite_matched += int(same.sum())
            self.nonfinite_mismatch += int((~same).sum())
            r, c = r[finite], c[finite]
        if r.size == 0:
            return
        err = r - c
        abs_err = np.abs(err)
        self.count += int(r.size)
        # Element-wise products and pairwise summation, not np.dot: BLAS threads cost more than they
        # save on tensors this size, and pairwise sums are the more accurate ones.
        self.sum_ref_sq += float(np.sum(r * r))
        self.sum_cand_sq += float(np.sum(c * c))
        self.sum_err_sq += float(np.sum(err * err))
        self.sum_dot += float(np.sum(r * c))
        self.sum_abs_err += float(abs_err.sum())
        self.max_abs_err = max(self.max_abs_err, float(abs_err.max()))
        self.ref_min = min(self.ref_min, float(r.min()))
        self.ref_max = max(self.ref_max, float(r.max()))
        nonzero = abs_err[abs_err > 0.0]
        self.zero_errors += int(abs_err.size - nonzero.size)
        bins = len(self.histogram)
        # Uniform bins in log10 space: index = floor((log10|e| - first) · bins_per_decade).
        index = np.floor((np.log10(nonzero) - _FIRST_DECADE) * _BINS_PER_DECADE).astype(np.int64)
        self.underflow += int((index < 0).sum())
        self.overflow += int((index >= bins).sum())
        inside = index[(index >= 0) & (index < bins)]
        self.histogram += np.bincount(inside, minlength=bins)[:bins]

    def merge(self, other: ErrorStats) -> ErrorStats:
        """Add another accumulator's data to this one (in place); returns ``self``."""
        for name in (
            "count",
            "sum_ref_sq",
            "sum_cand_sq",
            "sum_err_sq",
            "sum_dot",
            "sum_abs_err",
            "nonfinite_matched",
            "nonfinite_mismatch",
            "zero_errors",
            "underflow",
            "overflow",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_abs_err = max(self.max_abs_err, other.max_abs_err)
        self.ref_min = min(self.ref_min, other.ref_min)
        self.ref_max = max(self.ref_max, other.ref_max)
        self.histogram = self.histogram + other.histogram
        return self

    @property
    def sqnr_db(self) -> float:
        """``10·log10(Σr²/Σ(r−c)²)`` (see :func:`sqnr_db`)."""
        return sqnr_db(self.sum_ref_sq, self.sum_err_sq)

    @property
    def cosine(self) -> float:
        """``Σr·c / (‖r‖·‖c‖)``; 1 when both are zero, 0 when exactly one is."""
        if self.sum_ref_sq == 0.0 and self.sum_cand_sq == 0.0:
            return 1.0
        if self.sum_ref_sq == 0.0 or self.sum_cand_sq == 0.0:
            return 0.0
        return self.sum_dot / math.sqrt(self.sum_ref_sq * self.sum_cand_sq)

    @property
    def relative_error(self) -> float:
        """``‖r−c‖ / ‖r‖`` (0 when both norms are 0, inf when only ``‖r‖`` is)."""
        if self.sum_err_sq == 0.0:
            return 0.0
        if self.sum_ref_sq == 0.0:
            return math.inf
        return math.sqrt(self.sum_err_sq / self.sum_ref_sq)

    @property
    def mean_abs_err(self) -> float:
        """``Σ|r−c| / n`` over finite pairs (0 before any data)."""
        return self.sum_abs_err / self.count if self.count else 0.0

    def histogram_json(self) -> dict[str, object]:
        """The ``|r−c|`` histogram: ``zero``, ``underflow``, ``counts`` (per bin), ``overflow``."""
        return {
            "zero": self.zero_errors,
            "underflow": self.underflow,
            "counts": [int(v) for v in self.histogram],
            "overflow": self.overflow,
        }


@dataclasses.dataclass
class TopKAgreement:
    """How often the candidate keeps the reference's top-1 class among its own top k (k = 1 and 5).

    Attributes:
        samples: Samples seen.
        top1: Samples whose reference top-1 class is the candidate's top-1 (ties in its favour).
        top5: Samples whose reference top-1 class is among the candidate's top 5.
        classes: Number of classes C.
    """

    samples: int = 0
    top1: int = 0
    top5: int = 0
    classes: int = 0

    def update(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        """Add one batch of ``[N, C]`` scores."""
        reference = np.asarray(reference, dtype=np.float64)
        candidate = np.asarray(candidate, dtype=np.float64)
        n, classes = candidate.shape
        self.classes = classes
        reference_top = np.argmax(np.nan_to_num(reference, nan=-np.inf), axis=1)
        scores = np.nan_to_num(candidate, nan=-np.inf)
        chosen = scores[np.arange(n), reference_top]
        ordered = -np.sort(-scores, axis=1)
        valid = ~np.isnan(candidate).any(axis=1)  # a row with NaN scores never agrees
        self.samples += n
        self.top1 += int(((chosen >= ordered[:, 0]) & valid).sum())
        if classes > 5:
            self.top5 += int(((chosen >= ordered[:, 4]) & valid).sum())

    def merge(self, other: TopKAgreement) -> TopKAgreement:
        """Add another accumulator's counts (in place); returns ``self``."""
        self.samples += other.samples
        self.top1 += other.top1
        self.top5 += other.top5
        self.classes = max(self.classes, other.classes)
        return self

    @property
    def top1_agreement(self) -> float | None:
        """Fraction of samples with the same top-1 class (None before any data)."""
        return self.top1 / self.samples if self.samples else None

    @property
    def top5_agreement(self) -> float | None:
        """Fraction of samples whose reference top-1 is in the candidate's top 5 (None when C ≤ 5)."""
        return self.top5 / self.samples if self.samples and self.classes > 5 else None

    @property
    def top1_flips(self) -> int:
        """Samples whose top-1 class changed."""
        return self.samples - self.top1


@dataclasses.dataclass
class LabelAccuracy:
    """Top-1 accuracy of reference and candidate against task labels.

    Attributes:
        samples: Labelled samples seen.
        reference_correct: Samples the reference classifies correctly.
        candidate_correct: Samples the candidate classifies correctly.
        lost: Samples right in the reference and wrong in the candidate.
        gained: Samples wrong in the reference and right in the candidate.
    """

    samples: int = 0
    reference_correct: int = 0
    candidate_correct: int = 0
    lost: int = 0
    gained: int = 0

    def update(self, labels: np.ndarray, reference: np.ndarray, candidate: np.ndarray) -> None:
        """Add one batch: ``labels`` of shape ``[N]`` (class indices) or ``[N, C]`` (one-hot or scores)."""
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        truth = np.argmax(labels, axis=1) if labels.ndim == 2 else labels.astype(np.int64)
        ref_right = np.argmax(np.nan_to_num(reference, nan=-np.inf), axis=1) == truth
        cand_right = (np.argmax(np.nan_to_num(candidate, nan=-np.inf), axis=1) == truth) & ~np.isnan(
            np.asarray(candidate, dtype=np.float64)
        ).any(axis=1)
        self.samples += len(truth)
        self.reference_correct += int(ref_right.sum())
        self.candidate_correct += int(cand_right.sum())
        self.lost += int((ref_right & ~cand_right).sum())
        self.gained += int((~ref_right & cand_right).sum())

    def merge(self, other: LabelAccuracy) -> LabelAccuracy:
        """Add another accumulator's counts (in place); returns ``self``."""
        for name in ("samples", "reference_correct", "candidate_correct", "lost", "gained"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    @property
    def reference_accuracy(self) -> float | None:
        """Reference top-1 accuracy (None before any data)."""
        return self.reference_correct / self.samples if self.samples else None

    @property
    def candidate_accuracy(self) -> float | None:
        """Candidate top-1 accuracy (None before any data)."""
        return self.candidate_correct / self.samples if self.samples else None

    @property
    def drop_pp(self) -> float | None:
        """``100·(acc_ref − acc_cand)`` in percentage points (negative: the candidate is better)."""
        return 100.0 * (self.reference_correct - self.candidate_correct) / self.samples if self.samples else None
