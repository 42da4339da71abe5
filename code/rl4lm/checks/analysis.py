"""Checkers of the analysis labs (sessions 6 and 7): ``linear_cka`` (Kornblith et al., 2019) and
``expected_calibration_error`` (Guo et al., 2017).

These exercises take numpy arrays or torch tensors and return one Python number. As elsewhere, every checker computes
what it expects first (in float64, independently of the course's reference), calls the student's function on copies
of its inputs, names each known mistake in one sentence, and lists the cases it tests in its docstring, in the words
the lab states them. A Python float is expected; a numpy scalar, or a 0-dimensional numpy array or torch tensor, of the
right value is accepted too. There is no device check: the results are numbers, not tensors.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..analysis import calibration, cka
from ._core import CheckFailed, _call, _fmt, exercise

_CKA_TOL = 1e-5  # float32 inputs (and float32 arithmetic in the student's code) agree to about 1e-6
_ECE_TOL = 1e-6


# --------------------------------------------------------------------------- shared helpers
def _kind(value) -> str:
    """'a torch.Tensor', 'a numpy array', 'a str': what a returned value is, in words."""
    if isinstance(value, torch.Tensor):
        return "a torch.Tensor"
    if isinstance(value, np.ndarray):
        return "a numpy array"
    return f"a {type(value).__name__}"


def _number(out, what: str, hint: str) -> float:
    """The one number a function returned, as a float, or one sentence (not a number, an array of several values).

    Accepted: a Python int or float, a numpy scalar, a 0-dimensional numpy array or torch tensor. NaN and inf are the
    caller's to judge (its sentence knows the case).
    """
    if isinstance(out, (bool, np.bool_)):
        raise CheckFailed(f"{what} is the boolean {out}; return one number: {hint}.")
    if isinstance(out, (torch.Tensor, np.ndarray)):
        if out.ndim != 0:
            raise CheckFailed(f"{what} is {_kind(out)} of shape {_fmt(out.shape)}; return one number: {hint}.")
        numeric = (not out.is_complex() and out.dtype != torch.bool) if isinstance(out, torch.Tensor) else out.dtype.kind in "iuf"
        if not numeric:
            raise CheckFailed(f"{what} is {_kind(out)} of dtype {out.dtype}; return one number: {hint}.")
        return float(out.detach().cpu() if isinstance(out, torch.Tensor) else out)
    if isinstance(out, numbers.Real):
        return float(out)
    raise CheckFailed(f"{what} should be one number (a Python float), but it is {_kind(out)}.")


def _call_case(fn, what: str, args: tuple, names: tuple[str, ...], hints: dict | None = None):
    """The student's output on copies of ``args`` (inputs left unchanged), a crash named with the case it happened in."""
    try:
        return _call(fn, *args, names=names, hints=hints)
    except CheckFailed as failure:
        if str(failure).startswith("calling "):
            raise CheckFailed(f"for {what}, {failure}") from None
        raise


def _refuses(fn, what: str, args: tuple, names: tuple[str, ...], sentence: str) -> None:
    """Pass if fn raises (any exception) on ``args``; otherwise fail with ``sentence``, which says why the input is bad."""
    try:
        out = _call(fn, *args, names=names)
    except CheckFailed as failure:
        if str(failure).startswith("calling "):  # it raised: refused, as required
            return
        raise
    shown = f"{out:.4g}" if isinstance(out, float) else f"{_kind(out)}"
    raise CheckFailed(f"for {what}, your function returns {shown} instead of raising an error; {sentence}")


def _first_variant(got: float, expected: float, variants: list[tuple[float, str]], tol: float) -> str | None:
    """The sentence of the first known mistake whose value the student's result equals (and the right answer does not)."""
    for value, sentence in variants:
        if math.isfinite(value) and not math.isclose(value, expected, rel_tol=0, abs_tol=tol) and \
                math.isclose(got, value, rel_tol=1e-6, abs_tol=tol):
            return sentence
    return None


def _digits(a: float, b: float) -> int:
    """Decimals enough to show that two different numbers differ (4, 6 or 8)."""
    return next((d for d in (4, 6) if f"{a:.{d}f}" != f"{b:.{d}f}"), 8)


# --------------------------------------------------------------------------- 1. linear CKA
def _gram_norm(a: np.ndarray) -> float:
    """||A^T A||_F."""
    return float(np.linalg.norm(a.T @ a))


def _cka_formula(x: np.ndarray, y: np.ndarray, square: bool = True, traces: bool = False) -> float:
    """||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) of x and y as given (no centring here)."""
    cross = float(np.linalg.norm(y.T @ x))  # ||Y^T X||_F
    numerator = cross ** 2 if square else cross
    denominator = float(np.sum(x * x) * np.sum(y * y)) if traces else _gram_norm(x) * _gram_norm(y)  # tr(X^T X) = ||X||_F^2
    return numerator / denominator


def _centre(a: np.ndarray, axis: int = 0) -> np.ndarray:
    """Subtract the mean over ``axis`` (0: each column's mean over the inputs)."""
    return a - a.mean(axis=axis, keepdims=True)


def _expected_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA with centred columns, in float64 (Kornblith et al., 2019, eq. 5)."""
    return _cka_formula(_centre(x), _centre(y))


_CKA_SENTENCES = {
    "no_centring": "you do not centre the columns; CKA first subtracts from every column of X and of Y its mean over the "
                   "n inputs (rows).",
    "rows": "you centre each row (an input) over its features; CKA centres each column (a feature) over the n inputs.",
    "one_side": "you centre only one of X and Y; CKA centres the columns of both.",
    "no_square": "the numerator ||Y^T X||_F is not squared; CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F).",
    "sqrt": "your result is the square root of CKA; CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) (numerator squared, "
            "denominator not).",
    "traces": "your denominator is tr(X^T X) tr(Y^T Y), the squared Frobenius norms of X and Y; CKA's denominator is "
              "||X^T X||_F ||Y^T Y||_F, the Frobenius norms of the matrices X^T X and Y^T Y.",
    "standardised": "you scale the columns to unit variance; CKA centres the columns but keeps their scale, so a feature "
                    "that varies more counts more.",
}


def _cka_variants(x: np.ndarray, y: np.ndarray) -> list[tuple[float, str]]:
    """Known mistakes: (the value each gives on x and y, its diagnosis), the more specific first."""
    xc, yc = _centre(x), _centre(y)
    s = _CKA_SENTENCES
    with np.errstate(all="ignore"):
        standard = (lambda a: _centre(a) / a.std(axis=0, keepdims=True))
        return [(_cka_formula(x, y), s["no_centring"]),
                (_cka_formula(_centre(x, 1), _centre(y, 1)), s["rows"]),
                (_cka_formula(xc, y), s["one_side"]),
                (_cka_formula(x, yc), s["one_side"]),
                (_cka_formula(xc, yc, square=False), s["no_square"]),
                (math.sqrt(_expected_cka(x, y)), s["sqrt"]),
                (_cka_formula(xc, yc, traces=True), s["traces"]),
                (_cka_formula(standard(x), standard(y)), s["standardised"])]


def _random_orthogonal(p: int, rng: np.random.Generator) -> np.ndarray:
    """A random p x p orthogonal matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.normal(size=(p, p)))
    return q * np.sign(np.diag(r))


def _cka_cases() -> list[tuple[str, object, object, str]]:
    """(description, X, Y, what a wrong result breaks): numpy float64 unless the description says torch."""
    rng = np.random.default_rng(0)
    n = 20
    x = rng.normal(size=(n, 5)) * np.array([3.0, 1.0, 0.5, 2.0, 0.2]) + np.array([1.0, -2.0, 0.0, 4.0, 0.5])  # scales, means
    y = np.tanh(x[:, :3] @ rng.normal(size=(3, 3))) + 0.5 * rng.normal(size=(n, 3)) + 2.0  # (n, 3): related to x
    q = _random_orthogonal(5, rng)
    with_constant = np.concatenate([x, np.full((n, 1), 0.5)], axis=1)  # (n, 6)
    wide_x, wide_y = rng.normal(size=(6, 10)) + 1.0, rng.normal(size=(6, 12))
    wide_y[:, :10] += wide_x
    small_x, small_y = rng.normal(size=(2, 3)), rng.normal(size=(2, 4))
    first = "X (20, 5) and Y (20, 3)"
    return [
        (f"{first} (numpy, different widths)", x, y, "random"),
        (f"{first} as torch float32 tensors", torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), "random"),
        ("X (20, 5) with itself", x, x.copy(), "self"),
        ("X Q and 10 Y, with Q a 5 x 5 orthogonal matrix (the same CKA as for X and Y)", x @ q, 10.0 * y, "invariance"),
        ("X with a constant column added, X (20, 6), and Y (20, 3) (the same CKA as for X and Y)", with_constant, y, "constant"),
        ("more features than inputs, X (6, 10) and Y (6, 12)", wide_x, wide_y, "random"),
        ("n = 2 inputs, X (2, 3) and Y (2, 4) (CKA 1: after centring both have rank 1)", small_x, small_y, "two"),
    ]


def _as_float64(a) -> np.ndarray:
    """A checker's input as a float64 numpy array (torch float32 values are converted exactly)."""
    return a.detach().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)


def _centred_in_place(name: str):
    """The hint for an input changed in place: the centring mistake if it now equals its centred self."""
    def _hint(original, changed) -> str | None:
        before, after = _as_float64(original), _as_float64(changed)
        if before.shape == after.shape and np.allclose(after, _centre(before), atol=1e-5):
            return (f"your function centres {name} in place ({name} -= mean), which changes the caller's array; centre a copy "
                    f"instead ({name} = {name} - mean).")
        return None
    return _hint


def _cka_wrong(what: str, kind: str, got: float, expected: float, reference_value: float | None) -> str:
    """The sentence for a wrong CKA that is no known mistake, in terms of the property the case tests."""
    d = _digits(got, expected)
    if kind == "self":
        return f"for {what}, your function returns {got:.{d}f}, but identical representations have CKA 1."
    if kind == "two":
        return f"for {what}, your function returns {got:.{d}f}, expected 1."
    if kind == "invariance" and reference_value is not None:
        return (f"rotating the features of X (X Q, Q orthogonal) and scaling Y by 10 changed your CKA from {reference_value:.{d}f} "
                f"to {got:.{d}f}; CKA is invariant to both, so it stays {expected:.{d}f}.")
    if kind == "constant" and reference_value is not None:
        return (f"adding a constant column to X changed your CKA from {reference_value:.{d}f} to {got:.{d}f}; a constant column is "
                f"0 after centring and changes nothing, so CKA stays {expected:.{d}f}.")
    return (f"for {what}, your CKA is {got:.{d}f}, expected {expected:.{d}f} = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) "
            "with the columns of X and Y centred.")


@exercise(reference=cka.linear_cka, probe=lambda: (np.array([[0.0], [1.0]]), np.array([[0.0], [1.0]])))
def linear_cka(fn):
    """Compare with ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), the columns of X and Y centred (Kornblith et al., 2019, eq. 5).

    Cases tested: X (20, 5) and Y (20, 3) with different widths, columns of different scales and non-zero means, as numpy
    float64 arrays and as torch float32 tensors; X with itself (CKA 1); X Q and 10 Y with Q orthogonal (the same CKA as X
    and Y: invariance to rotations and isotropic scaling); X with a constant column added (the same CKA); more features
    than inputs, X (6, 10) and Y (6, 12); n = 2 inputs (CKA 1). Refusal required: X and Y with different numbers of rows
    (20 and 19) must raise an error (any exception). Not tested: n = 1 and matrices whose every column is constant.
    Also: X and Y are left unchanged. The result may be a Python float, a numpy scalar, or a 0-dimensional array or tensor.
    """
    cases = _cka_cases()
    values: dict[str, float] = {}
    for what, X, Y, kind in cases:
        x, y = _as_float64(X), _as_float64(Y)
        expected = _expected_cka(x, y)
        out = _call_case(fn, what, (X, Y), ("X", "Y"), {"X": _centred_in_place("X"), "Y": _centred_in_place("Y")})
        got = _number(out, f"the CKA for {what}", "CKA, a similarity between 0 and 1")
        if not math.isfinite(got):
            if kind == "constant":
                raise CheckFailed(f"for {what}, your CKA is {got}; a constant column is 0 after centring and should change "
                                  "nothing, but your function divides by something that is 0 for it.")
            raise CheckFailed(f"for {what}, your CKA is {got}; run your function on a small example and print the intermediate "
                              "values to see where it first appears.")
        values.setdefault(kind, got)
        if math.isclose(got, expected, rel_tol=1e-6, abs_tol=_CKA_TOL):
            continue
        sentence = _first_variant(got, expected, _cka_variants(x, y), _CKA_TOL)
        if sentence:
            raise CheckFailed(f"for {what}: {sentence}")
        raise CheckFailed(_cka_wrong(what, kind, got, expected, values.get("random")))
    x, y = cases[0][1], cases[0][2]
    _refuses(fn, "X with 20 rows and Y with 19", (x, y[:19]), ("X", "Y"),
             "CKA compares representations of the same inputs, so X and Y must have the same number of rows.")
    return ("different widths, numpy and torch inputs, X with itself, rotation and scaling, a constant column, more features "
            "than inputs, n = 2, and a refusal of different n")


# --------------------------------------------------------------------------- 2. expected calibration error
def _bins(conf: np.ndarray, n_bins: int, rule: str = "right") -> np.ndarray:
    """Bin of each confidence among n_bins equal-width bins of [0, 1]; -1: in no bin.

    "right": (lo, hi], 0 in the first bin (the definition); "left": [lo, hi), 1 in the last bin; "left_drop": [lo, hi),
    1 in no bin; "zero_drop": (lo, hi], 0 in no bin; "zero_last": (lo, hi], 0 in the last bin (index -1 wraps around).
    Exact for confidences away from the edges and for edges exact in binary (0.25, 0.5 with n_bins = 4).
    """
    scaled = conf * n_bins
    if rule.startswith("left"):
        index = np.floor(scaled).astype(int)
        top = n_bins - 1 if rule == "left" else -1
        return np.where(index >= n_bins, top, index)
    index = np.ceil(scaled).astype(int) - 1
    zero = {"right": 0, "zero_drop": -1, "zero_last": n_bins - 1}[rule]
    return np.where(conf == 0, zero, index)


def _ece(conf: np.ndarray, right: np.ndarray, n_bins: int, rule: str = "right", how: str = "weighted") -> float:
    """ECE = sum_b (n_b / n) |acc(b) - conf(b)| (Guo et al., 2017, eq. 3), or one known mistake in how bins are combined.

    ``how``: "weighted" (the definition), "signed" (acc - conf without |.|), "unweighted" (mean over all n_bins bins, empty
    bins 0), "nonempty" (mean over the bins that hold samples), "empty_gap" (mean over all bins, an empty bin's gap its
    middle: accuracy 0 against the bin's centre), "midpoint" (the bin's middle in place of its mean confidence).
    """
    index = _bins(conf, n_bins, rule)
    n = len(conf)
    total, gaps = 0.0, []
    for b in range(n_bins):
        members = index == b
        middle = (b + 0.5) / n_bins
        if not members.any():
            gaps.append(middle if how == "empty_gap" else 0.0)
            continue
        acc = float(right[members].mean())
        mean_conf = middle if how == "midpoint" else float(conf[members].mean())
        gap = acc - mean_conf if how == "signed" else abs(acc - mean_conf)
        gaps.append(gap)
        total += members.sum() / n * gap
    if how in ("unweighted", "empty_gap"):
        return float(np.mean(gaps))
    if how == "nonempty":
        return float(np.mean([g for g, b in zip(gaps, range(n_bins)) if (index == b).any()]))
    return float(total)


_ECE_SENTENCES = {
    "left": "a confidence on a bin edge (e.g. 0.5 with n_bins = 4) lands in the bin above it in your function; the bins are "
            "(lo, hi], so 0.5 belongs to (0.25, 0.5].",
    "zero_drop": "a confidence of exactly 0 counts in no bin in your function; it belongs to the first bin, [0, 1/n_bins].",
    "zero_last": "a confidence of exactly 0 lands in your last bin (bin index -1 wraps around to the end); it belongs to the "
                 "first bin, [0, 1/n_bins].",
    "unweighted": "you average the bins' gaps with equal weights; each bin's gap |acc(b) - conf(b)| is weighted by its share "
                  "of the samples, n_b / n.",
    "nonempty": "you average the gaps of the bins that hold samples with equal weights; each bin's gap is weighted by its "
                "share of the samples, n_b / n, so a bin of one sample counts less than a bin of a hundred.",
    "empty_gap": "your ECE counts empty bins: a bin without samples has no accuracy and no gap, and each bin's gap is "
                 "weighted by its share of the samples, n_b / n.",
    "signed": "you add signed gaps, so over- and under-confident bins cancel; ECE adds the absolute gap |acc(b) - conf(b)| "
              "of each bin.",
    "midpoint": "you compare each bin's accuracy with the middle of the bin; conf(b) is the mean confidence of the samples "
                "in bin b.",
    "per_sample": "you average |confidence - correct| over the samples; ECE compares accuracy and mean confidence per bin, "
                  "so the errors of samples in one bin can cancel.",
    "n_bins": "your result does not depend on n_bins: it equals the ECE with 10 bins; use n_bins equal-width bins.",
    "n_bins_minus_one": "you make n_bins - 1 bins (np.linspace(0, 1, n_bins) gives n_bins edges); n_bins bins need "
                        "n_bins + 1 edges.",
    "percent": "your ECE is 100 times too large; return a fraction between 0 and 1, not a percentage.",
}


def _ece_variants(conf: np.ndarray, right: np.ndarray, n_bins: int) -> list[tuple[float, str]]:
    """Known mistakes: (the value each gives, its diagnosis), the more specific first."""
    s = _ECE_SENTENCES
    variants = [(_ece(conf, right, n_bins, "left"), s["left"]),
                (_ece(conf, right, n_bins, "left_drop"), s["left"]),
                (_ece(conf, right, n_bins, "zero_drop"), s["zero_drop"]),
                (_ece(conf, right, n_bins, "zero_last"), s["zero_last"]),
                (_ece(conf, right, n_bins, how="unweighted"), s["unweighted"]),
                (_ece(conf, right, n_bins, how="nonempty"), s["nonempty"]),
                (_ece(conf, right, n_bins, how="empty_gap"), s["empty_gap"]),
                (_ece(conf, right, n_bins, how="signed"), s["signed"]),
                (-_ece(conf, right, n_bins, how="signed"), s["signed"]),
                (_ece(conf, right, n_bins, how="midpoint"), s["midpoint"]),
                (float(np.mean(np.abs(conf - right))), s["per_sample"]),
                (100 * _ece(conf, right, n_bins), s["percent"])]
    if n_bins != 10:
        variants.append((_ece(conf, right, 10), s["n_bins"]))
    if n_bins > 1:
        variants.append((_ece(conf, right, n_bins - 1), s["n_bins_minus_one"]))
    return variants


def _ece_cases() -> list[tuple[str, object, object, int | None]]:
    """(description, confidences, correct, n_bins or None for the default 10)."""
    rng = np.random.default_rng(1)
    conf = 0.5 + 0.5 * rng.random(200) ** 0.7  # (200,): a classifier's top probability, in (0.5, 1]: bins below 0.5 empty
    right = (rng.random(200) < 0.75).astype(np.int64)  # under-confident below 0.75, over-confident above (gaps of both signs)
    mixed = rng.random(100)  # (100,): every bin used
    mixed_right = rng.random(100) < np.clip(mixed + 0.15, 0, 1)  # booleans, under-confident
    edges = np.array([0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 0.1875, 0.4375, 0.5625, 0.9375, 0.9375])  # (exact in binary)
    edges_right = np.array([1, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0, 1])
    ends = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.4375, 0.5625, 0.9375])
    ends_right = np.array([1, 1, 0, 1, 1, 0, 0, 0, 1, 1])
    one_bin = np.array([0.625, 0.65625, 0.6875, 0.609375, 0.671875])  # (exact in binary)
    return [("200 samples with confidences between 0.5 and 1 (bins below 0.5 empty), integer 0/1 correct, n_bins left at "
             "its default", conf, right, None),
            ("the same 200 samples with n_bins = 4", conf, right, 4),
            ("100 samples with confidences in every bin and boolean correct, n_bins = 10", mixed, mixed_right, 10),
            ("the same 100 samples as torch tensors (float32 confidences, bool correct), n_bins = 10",
             torch.tensor(mixed, dtype=torch.float32), torch.tensor(mixed_right), 10),
            ("confidences on the bin edges 0.25, 0.5 and 0.75 and between them, n_bins = 4", edges, edges_right, 4),
            ("confidences of exactly 0 and exactly 1, n_bins = 4", ends, ends_right, 4),
            ("a single sample (confidence 0.625, wrong), n_bins = 10", np.array([0.625]), np.array([0]), 10),
            ("5 samples all in one bin (0.6, 0.7], n_bins = 10", one_bin, np.array([1, 0, 1, 1, 0]), 10)]


def _ece_inputs(conf, right) -> tuple[np.ndarray, np.ndarray]:
    """A case's confidences and correct as float64 arrays (float32 tensors converted exactly)."""
    return _as_float64(conf), _as_float64(right.to(torch.float64) if isinstance(right, torch.Tensor) else right)


def _sorted_in_place(original, changed) -> str | None:
    """The hint for confidences sorted in place."""
    before, after = _as_float64(original), _as_float64(changed)
    if before.shape == after.shape and np.array_equal(np.sort(before), after):
        return ("your function sorts confidences in place (confidences.sort()), which reorders the caller's array and "
                "separates it from correct; sort a copy (np.sort, or np.argsort to reorder both).")
    return None


@exercise(reference=calibration.expected_calibration_error, probe=lambda: (np.array([0.5]), np.array([1])))
def expected_calibration_error(fn):
    """Compare with ECE = sum_b (n_b / n) |acc(b) - conf(b)| over n_bins equal-width bins (lo, hi] (Guo et al., 2017, eq. 3).

    Cases tested: 200 samples with confidences between 0.5 and 1 (the bins below 0.5 empty) and integer 0/1 correct, with
    n_bins left at its default (10) and with n_bins = 4; 100 samples covering every bin with boolean correct, as numpy
    arrays and as torch tensors (float32 confidences, bool correct); confidences exactly on the bin edges 0.25, 0.5 and
    0.75 with n_bins = 4 (an edge belongs to the bin below it); confidences of exactly 0 (first bin) and exactly 1 (last
    bin); a single sample; all samples in one bin. Refusals required (any exception): confidences and correct of
    different lengths (5 and 4); a confidence of 1.5; a confidence of -0.1. Also: the inputs are left unchanged. The
    result may be a Python float, a numpy scalar, or a 0-dimensional array or tensor.
    """
    for what, conf, right, n_bins in _ece_cases():
        c, r = _ece_inputs(conf, right)
        expected = _ece(c, r, n_bins or 10)
        args = (conf, right) if n_bins is None else (conf, right, n_bins)
        out = _call_case(fn, what, args, ("confidences", "correct"), {"confidences": _sorted_in_place})
        got = _number(out, f"the ECE for {what}", "the expected calibration error, between 0 and 1")
        if not math.isfinite(got):
            if math.isnan(got) and np.bincount(_bins(c, n_bins or 10), minlength=n_bins or 10).min() == 0:  # 0/0 in an empty bin
                raise CheckFailed(f"for {what}, your ECE is {got}: a bin without samples has no accuracy, and it should add "
                                  "nothing to the ECE.")
            raise CheckFailed(f"for {what}, your ECE is {got}; run your function on a small example and print the intermediate "
                              "values to see where it first appears.")
        if math.isclose(got, expected, rel_tol=1e-6, abs_tol=_ECE_TOL):
            continue
        sentence = _first_variant(got, expected, _ece_variants(c, r, n_bins or 10), _ECE_TOL)
        if sentence:
            raise CheckFailed(f"for {what}: {sentence}")
        d = _digits(got, expected)
        if n_bins is None and any(math.isclose(got, _ece(c, r, k), abs_tol=_ECE_TOL) for k in (5, 15, 20)):
            raise CheckFailed(f"for {what}, your ECE is {got:.{d}f}, expected {expected:.{d}f}: the default is n_bins = 10.")
        raise CheckFailed(f"for {what}, your ECE is {got:.{d}f}, expected {expected:.{d}f} = sum over the bins (lo, hi] of "
                          "(n_b / n) |acc(b) - conf(b)|.")
    conf, right = _ece_cases()[4][1:3]
    _refuses(fn, "confidences of length 5 and correct of length 4", (conf[:5], right[:4], 4), ("confidences", "correct"),
             "give one confidence and one correct per sample, so lengths that differ are an error.")
    for bad in (1.5, -0.1):
        spoilt = conf[:5].copy()
        spoilt[2] = bad
        _refuses(fn, f"a confidence of {bad}", (spoilt, right[:5], 4), ("confidences", "correct"),
                 "confidences are probabilities in [0, 1] (a logit or a percentage passed by mistake would give a meaningless "
                 "ECE), so a value outside [0, 1] is an error.")
    return ("default and other n_bins, empty bins, boolean and integer correct, numpy and torch inputs, bin edges, "
            "confidences 0 and 1, a single sample, one bin, and refusals of different lengths and confidences outside [0, 1]")
