"""Calibration of a model's confidences: the reliability diagram's bins and the expected calibration error (Guo et al., 2017).

A classifier is calibrated when, among the answers it gives with confidence about ``c``, a share ``c`` is right.
Confidences are split into ``n_bins`` equal-width bins ``(lo, hi]`` of [0, 1]; a confidence of exactly 0 goes into the
first bin. The expected calibration error is the bins' gap between accuracy and mean confidence, each bin weighted by
its share of the samples:

    ECE = sum_b (n_b / n) |acc(b) - conf(b)|        (Guo et al., 2017, eq. 3; Naeini et al., 2015)
"""
from __future__ import annotations

import numpy as np

from .arrays import float64_array


def as_vector(values, name: str) -> np.ndarray:
    """A 1-D float64 copy of a list, numpy array or torch tensor, or a one-sentence ValueError naming ``name``."""
    array = float64_array(values, name, "a list or array of numbers")
    if array.ndim != 1:
        raise ValueError(f"{name} has shape {tuple(array.shape)}; give one number per sample (a 1-D array).")
    return array


def _check_inputs(confidences, correct, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(confidences, correct) as float64 vectors after every check of :func:`expected_calibration_error`."""
    conf = as_vector(confidences, "confidences")
    right = as_vector(correct, "correct")
    if len(conf) != len(right):
        raise ValueError(f"confidences has {len(conf)} samples but correct has {len(right)}; give one of each per sample.")
    if len(conf) == 0:
        raise ValueError("confidences is empty; calibration needs at least one sample.")
    if not np.isfinite(conf).all():
        raise ValueError(f"confidences[{int(np.flatnonzero(~np.isfinite(conf))[0])}] is not a finite number (NaN or inf).")
    outside = np.flatnonzero((conf < 0) | (conf > 1))
    if len(outside):
        raise ValueError(f"confidences[{int(outside[0])}] is {conf[outside[0]]:g}; confidences are probabilities in [0, 1] "
                         "(a softmax output, not a logit or a log-probability).")
    if not np.isin(right, (0.0, 1.0)).all():
        raise ValueError(f"correct[{int(np.flatnonzero(~np.isin(right, (0.0, 1.0)))[0])}] is not 0 or 1; give True/False (or 1/0) "
                         "per sample.")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins is {n_bins!r}; it must be a positive whole number of bins.")
    return conf, right


def bin_index(confidences: np.ndarray, n_bins: int) -> np.ndarray:
    """The bin (lo, hi] of each confidence among n_bins equal-width bins of [0, 1]; 0 goes into bin 0 (Guo et al., 2017)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)  # (n_bins + 1,)
    return np.clip(np.searchsorted(edges, confidences, side="left") - 1, 0, n_bins - 1)  # (n,): edges[b] < c <= edges[b + 1]


def reliability_bins(confidences, correct, n_bins: int = 10) -> dict[str, np.ndarray]:
    """The reliability diagram's bins (DeGroot and Fienberg, 1983; Guo et al., 2017): per bin, its samples, accuracy, confidence.

    Returns ``{"lo", "hi", "count", "accuracy", "confidence"}``, each (n_bins,); accuracy and confidence are NaN in an
    empty bin. Inputs are checked as in :func:`expected_calibration_error`.
    """
    conf, right = _check_inputs(confidences, correct, n_bins)
    index = bin_index(conf, n_bins)  # (n,)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)  # (n_bins,)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=right, minlength=n_bins) / count
        confidence = np.bincount(index, weights=conf, minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {"lo": edges[:-1], "hi": edges[1:], "count": count, "accuracy": accuracy, "confidence": confidence}


def expected_calibration_error(confidences, correct, n_bins: int = 10) -> float:
    """Expected calibration error, sum_b (n_b / n) |acc(b) - conf(b)| over equal-width bins (lo, hi] (Guo et al., 2017, eq. 3).

    ``confidences`` (n,) in [0, 1], the probability the model gave its answer; ``correct`` (n,) of 0/1 or booleans,
    whether that answer was right; lists, numpy arrays and torch tensors all work. A confidence of 0 counts in the first
    bin; empty bins contribute nothing. Confidences outside [0, 1], NaN, lengths that differ, no samples or a bad
    ``n_bins`` raise a ValueError of one sentence.
    """
    bins = reliability_bins(confidences, correct, n_bins)
    used = bins["count"] > 0
    weights = bins["count"][used] / bins["count"].sum()
    return float(np.sum(weights * np.abs(bins["accuracy"][used] - bins["confidence"][used])))
