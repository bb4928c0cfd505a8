"""Metrics for rewrites that change the math by design (fp16, int8): SNR and top-k.

Element-wise tolerances fit a rewrite that keeps the math (slim, optimized); a float16
or int8 model differs everywhere a little, so it is also judged by how much signal is
left (SNR, cosine) and, for outputs that look like class scores, whether it still picks
the same classes.
"""

from __future__ import annotations

import math

import numpy as np

#: The k of the wider agreement (``top5``).
TOP_K = 5


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-noise ratio of ``got`` against ``ref`` in dB:
    ``10 * log10(sum(ref**2) / sum((got - ref)**2))``.

    ``inf`` when they are equal, ``-inf`` when the reference is all zeros and ``got``
    is not (no signal), NaN for empty arrays. Both float64, finite values only.
    """
    if ref.size == 0:
        return math.nan
    noise = _energy(got - ref)
    signal = _energy(ref)
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * (math.log10(signal) - math.log10(noise))


def _energy(a: np.ndarray) -> float:
    """``sum(a**2)`` without overflow (scaled by the peak), as a float."""
    peak = float(np.max(np.abs(a)))
    if peak == 0:
        return 0.0
    return peak * peak * float(np.sum(np.square(a / peak)))


def correlation(ref: np.ndarray, got: np.ndarray) -> float | None:
    """Pearson's r: the cosine of the two with their means removed, flattened.

    Cosine alone is fooled by an offset: an output stuck at the reference's mean has a
    cosine near 1 when the mean dwarfs the variation, and a correlation near 0. None
    where the reference does not vary (constant, or one value): nothing to correlate
    with (its degenerate-reference warning says so); 0 when only ``got`` is constant.
    """
    from nnkit.compare.metrics import cosine

    if ref.size < 2:
        return None
    r, g = ref - ref.mean(), got - got.mean()
    if not np.any(r):
        return None
    return cosine(r, g)


def is_class_scores(shape: tuple[int, ...]) -> bool:
    """An output that looks like class scores: 2-D (rows x classes), more than one class."""
    return len(shape) == 2 and shape[-1] > 1 and shape[0] > 0


def top_k_agreement(ref: np.ndarray, got: np.ndarray) -> tuple[float | None, float | None]:
    """For class-score-like outputs (:func:`is_class_scores`): the share of rows whose
    top-1 class is the same (``top1``), and the share of rows whose reference top-1
    class is among ``got``'s top :data:`TOP_K` (``top5``; None with :data:`TOP_K` classes
    or fewer, where it always holds). (None, None) for other outputs.

    NaN ranks above every number (as :func:`numpy.argmax` finds it first), in both.
    """
    if ref.shape != got.shape or not is_class_scores(tuple(ref.shape)):
        return None, None
    want = _argmax(ref)
    top1 = float(np.mean(_argmax(got) == want))
    if ref.shape[-1] <= TOP_K:
        return top1, None
    ranked = np.argsort(-np.nan_to_num(got, nan=np.inf), axis=-1, kind="stable")[:, :TOP_K]
    top5 = float(np.mean(np.any(ranked == want[:, None], axis=-1)))
    return top1, top5


def _argmax(a: np.ndarray) -> np.ndarray:
    return np.argmax(np.nan_to_num(a, nan=np.inf), axis=-1)
