"""The analysis labs' checkers (``linear_cka``, ``expected_calibration_error``) accept a student's correct code, refuse the
course's, and reject planted bugs, each with the sentence that names it; the course's references agree with independent
computations (CKA with the HSIC formulation, ECE with exact rational arithmetic) and refuse bad input in one sentence.

The correct functions below are written as a student would, not copied from the package, so that the checkers are
tested against a second implementation of each formula.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from helpers import rejects
from rl4lm import checks
from rl4lm.analysis import calibration, cka
from rl4lm.checks import analysis as analysis_checks


# --------------------------------------------------------------------------- correct code, as a student writes it
def cka_student(X, Y):
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if X.shape[0] != Y.shape[0]:
        raise ValueError("X and Y need the same number of rows")
    X, Y = X - X.mean(axis=0), Y - Y.mean(axis=0)
    return float(np.linalg.norm(Y.T @ X) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)))


def hsic(K, L):
    """tr(K H L H) / (n - 1)^2, H = I - 11^T / n (Gretton et al., 2005; Kornblith et al., 2019, eq. 3)."""
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def cka_hsic(X, Y):
    """CKA as HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with linear kernels K = X X^T, L = Y Y^T."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if len(X) != len(Y):
        raise ValueError("different n")
    K, L = X @ X.T, Y @ Y.T
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def cka_torch(X, Y):
    """Torch throughout, returning a 0-dimensional tensor."""
    X, Y = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(Y, dtype=torch.float64)
    X, Y = X - X.mean(dim=0), Y - Y.mean(dim=0)
    return torch.linalg.matrix_norm(Y.T @ X) ** 2 / (torch.linalg.matrix_norm(X.T @ X) * torch.linalg.matrix_norm(Y.T @ Y))


def ece_student(confidences, correct, n_bins=10):
    conf, right = np.asarray(confidences, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if conf.shape != right.shape:
        raise ValueError("one correct per confidence")
    if ((conf < 0) | (conf > 1)).any():
        raise ValueError("confidences must lie in [0, 1]")
    edges = np.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for b in range(n_bins):
        members = (conf > edges[b]) & (conf <= edges[b + 1])
        if b == 0:
            members |= conf == 0
        if members.any():
            ece += members.mean() * abs(right[members].mean() - conf[members].mean())
    return ece


def ece_digitize(confidences, correct, n_bins=10):
    """np.digitize with right=True: edges[i-1] < c <= edges[i]; 0 clipped into the first bin; torch converted to numpy."""
    conf, right = np.asarray(confidences, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if len(conf) != len(right) or conf.min() < 0 or conf.max() > 1:
        raise ValueError("bad input")
    index = np.clip(np.digitize(conf, np.linspace(0, 1, n_bins + 1), right=True) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    gap = np.abs(np.bincount(index, right, n_bins) - np.bincount(index, conf, n_bins))  # n_b |acc - conf|
    return np.float64(gap.sum() / len(conf)) + 0 * count.sum()  # a numpy scalar is accepted


def cka_float32(X, Y):
    """Torch float32 arithmetic throughout, returning .item()."""
    X, Y = torch.as_tensor(np.asarray(X), dtype=torch.float32), torch.as_tensor(np.asarray(Y), dtype=torch.float32)
    if len(X) != len(Y):
        raise ValueError("different n")
    X, Y = X - X.mean(0), Y - Y.mean(0)
    return (torch.linalg.norm(Y.T @ X) ** 2 / (torch.linalg.norm(X.T @ X) * torch.linalg.norm(Y.T @ Y))).item()


def ece_float32(confidences, correct, n_bins=10):
    """Torch float32 arithmetic and torch.linspace's float32 edges, returning a 0-dimensional tensor."""
    conf, right = torch.as_tensor(np.asarray(confidences), dtype=torch.float32), torch.as_tensor(np.asarray(correct)).float()
    if len(conf) != len(right) or conf.min() < 0 or conf.max() > 1:
        raise ValueError("bad input")
    edges = torch.linspace(0, 1, n_bins + 1)
    ece = torch.zeros(())
    for b in range(n_bins):
        members = (conf > edges[b]) & (conf <= edges[b + 1]) | ((conf == 0) if b == 0 else False)
        if members.any():
            ece += members.float().mean() * (right[members].mean() - conf[members].mean()).abs()
    return ece


STUDENT = {"linear_cka": cka_student, "expected_calibration_error": ece_student}
REFERENCE = {"linear_cka": cka.linear_cka, "expected_calibration_error": calibration.expected_calibration_error}


@pytest.mark.parametrize("name", sorted(STUDENT))
def test_accepts_a_students_correct_code_and_refuses_the_course(name, capsys):
    assert checks.EXERCISES[name].topic == "analysis" and checks.EXERCISES[name].reference is REFERENCE[name]
    assert getattr(checks, name)(STUDENT[name]) is True
    assert f"{STUDENT[name].__name__}: all checks passed" in capsys.readouterr().out
    rejects(getattr(checks, name), REFERENCE[name], "this is the course's own", "write the function yourself")


def test_other_correct_forms_are_accepted():
    assert checks.linear_cka(cka_hsic)  # the kernel (HSIC) form: X X^T in place of X^T X gives the same value
    assert checks.linear_cka(cka_torch)  # a 0-dimensional torch tensor
    assert checks.expected_calibration_error(ece_digitize)  # a numpy scalar
    assert checks.linear_cka(cka_float32) and checks.expected_calibration_error(ece_float32)  # float32 is precise enough
    assert checks.expected_calibration_error(lambda c, r, n_bins=10: np.array(ece_student(c, r, n_bins)))  # a 0-d array


def test_checker_cases_avoid_float_artefacts_at_bin_edges():
    """Random confidences stay 1e-6 away from every edge k/m that a checker or a planted bug uses, so that float32
    arithmetic, np.linspace's edges (0.30000000000000004) and k / m all bin them alike; edges are tested with 0.25, 0.5, 0.75."""
    for _, conf, _, _ in analysis_checks._ece_cases():
        c = analysis_checks._as_float64(conf)
        for m in range(1, 21):
            distance = np.abs(c * m - np.round(c * m)) / m
            exact = c * 64 == np.round(c * 64)  # 0, 1/64, ..., 1: exact in binary, so every rule bins them alike
            assert (distance[~exact] > 1e-6).all(), (m, c[~exact][distance[~exact] <= 1e-6])


def test_expected_values_are_the_references():
    """The checkers' own float64 formulas agree with the package's references on the checkers' cases."""
    for _, X, Y, _ in analysis_checks._cka_cases():
        assert analysis_checks._expected_cka(analysis_checks._as_float64(X), analysis_checks._as_float64(Y)) == \
            pytest.approx(cka.linear_cka(X, Y), abs=1e-12)
    for _, conf, right, n_bins in analysis_checks._ece_cases():
        c, r = analysis_checks._ece_inputs(conf, right)
        for bins in {n_bins or 10, 3, 4, 9, 10}:
            assert analysis_checks._ece(c, r, bins) == pytest.approx(calibration.expected_calibration_error(conf, right, bins), abs=1e-12)


# --------------------------------------------------------------------------- 1. linear CKA
def _cka_from(centre_x=lambda a: a - a.mean(0), centre_y=None, square=True, traces=False, scale=False):
    """A CKA with switches for the planted mistakes."""
    def linear_cka(X, Y):
        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
        X, Y = centre_x(X), (centre_y or centre_x)(Y)
        if scale:
            X, Y = X / X.std(0), Y / Y.std(0)
        cross = np.linalg.norm(Y.T @ X)
        numerator = cross ** 2 if square else cross
        if traces:
            return numerator / (np.trace(X.T @ X) * np.trace(Y.T @ Y))
        return numerator / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))
    return linear_cka


def test_linear_cka_bugs():
    same = lambda a: a  # noqa: E731
    rows = lambda a: a - a.mean(1, keepdims=True)  # noqa: E731
    columns = lambda a: a - a.mean(0)  # noqa: E731

    def square_root(X, Y):
        return np.sqrt(cka_student(X, Y))

    def centres_in_place(X, Y):
        X = np.asarray(X)
        X -= X.mean(axis=0)
        return cka_student(X, Y)

    def truncates(X, Y):
        n = min(len(X), len(Y))
        return cka_student(X[:n], Y[:n])

    def capped(X, Y):  # right except where CKA is 1
        return min(cka_student(X, Y), 0.999)

    def nan_for_a_constant_column(X, Y):
        spread = np.asarray(X, dtype=np.float64).std(0).min()
        with np.errstate(invalid="ignore"):
            return cka_student(X, Y) * spread / spread

    def scale_dependent(X, Y):  # right except for the scaled Y
        value = cka_student(X, Y)
        return value * 0.9 if np.abs(np.asarray(Y)).max() > 15 else value

    def wrong_for_a_constant_column(X, Y):
        X = np.asarray(X)
        return cka_student(X, Y) + 0.1 * (X.shape[1] == 6)

    def wrong_for_two_inputs(X, Y):
        return cka_student(X, Y) / 2 if len(X) == 2 else cka_student(X, Y)

    def generic(X, Y):
        return 0.5 * cka_student(X, Y)

    rejects(checks.linear_cka, _cka_from(centre_x=same), "X (20, 5) and Y (20, 3) (numpy", "you do not centre the columns")
    rejects(checks.linear_cka, _cka_from(centre_x=rows), "you centre each row (an input)")
    rejects(checks.linear_cka, _cka_from(centre_x=columns, centre_y=same), "you centre only one of X and Y")
    rejects(checks.linear_cka, _cka_from(centre_x=same, centre_y=columns), "you centre only one of X and Y")
    rejects(checks.linear_cka, _cka_from(square=False), "the numerator ||Y^T X||_F is not squared")
    rejects(checks.linear_cka, square_root, "the square root of CKA")
    rejects(checks.linear_cka, _cka_from(traces=True), "your denominator is tr(X^T X) tr(Y^T Y)")
    rejects(checks.linear_cka, _cka_from(scale=True), "you scale the columns to unit variance")
    rejects(checks.linear_cka, centres_in_place, "your function centres X in place")
    rejects(checks.linear_cka, truncates, "for X with 20 rows and Y with 19, your function returns", "instead of raising an error",
            "same number of rows")
    rejects(checks.linear_cka, capped, "for X (20, 5) with itself, your function returns 0.9990, but identical representations "
            "have CKA 1")
    rejects(checks.linear_cka, nan_for_a_constant_column, "a constant column is 0 after centring and should change nothing")
    rejects(checks.linear_cka, scale_dependent, "rotating the features of X (X Q, Q orthogonal) and scaling Y by 10 changed your CKA from")
    rejects(checks.linear_cka, wrong_for_a_constant_column, "adding a constant column to X changed your CKA from")
    rejects(checks.linear_cka, wrong_for_two_inputs, "n = 2 inputs", "your function returns 0.5000, expected 1")
    rejects(checks.linear_cka, generic, "your CKA is", "with the columns of X and Y centred")


def test_linear_cka_outputs_and_crashes():
    rejects(checks.linear_cka, lambda X, Y: float("nan"), "your CKA is nan", "print the intermediate values")
    rejects(checks.linear_cka, lambda X, Y: np.array([cka_student(X, Y)]), "is a numpy array of shape (1)", "return one number")
    rejects(checks.linear_cka, lambda X, Y: torch.tensor([1.0, 2.0]), "is a torch.Tensor of shape (2)")
    rejects(checks.linear_cka, lambda X, Y: str(cka_student(X, Y)), "should be one number (a Python float), but it is a str")
    rejects(checks.linear_cka, lambda X, Y: True, "is the boolean True")
    rejects(checks.linear_cka, lambda X, Y: torch.tensor(True), "of dtype torch.bool")

    def torch_only(X, Y):  # fails on numpy inputs
        return cka_torch(X.clone(), Y)

    rejects(checks.linear_cka, torch_only, "for X (20, 5) and Y (20, 3) (numpy, different widths), calling torch_only raised "
            "AttributeError")
    assert checks.linear_cka(lambda X, Y: np.float32(cka_student(X, Y)))  # float32 precision is enough


def test_linear_cka_reference_equals_the_hsic_formulation():
    rng = np.random.default_rng(7)
    for n, p1, p2 in ((10, 3, 4), (30, 8, 2), (5, 12, 9), (2, 1, 3)):
        X = rng.normal(size=(n, p1)) + rng.normal(size=p1)
        Y = np.tanh(X[:, :1] * rng.normal(size=(1, p2))) + 0.3 * rng.normal(size=(n, p2))
        expected = cka_hsic(X, Y)
        assert cka.linear_cka(X, Y) == pytest.approx(expected, abs=1e-10)  # (the n x n products round off more)
        assert cka.linear_cka(torch.tensor(X), torch.tensor(Y)) == pytest.approx(expected, abs=1e-10)
        assert cka.linear_cka(torch.tensor(X, dtype=torch.float32), Y) == pytest.approx(expected, abs=1e-5)
        assert 0 <= cka.linear_cka(X, Y) <= 1 and isinstance(cka.linear_cka(X, Y), float)
    X = rng.normal(size=(15, 4))
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    assert cka.linear_cka(X, 5.0 * X @ q) == pytest.approx(1.0, abs=1e-12)
    assert cka.linear_cka(X, np.concatenate([X, np.full((15, 1), 3.0)], axis=1)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("as_input", [np.asarray, torch.tensor], ids=["numpy", "torch"])
def test_linear_cka_reference_refuses_bad_input_in_one_sentence(as_input):
    good = as_input(np.arange(12.0).reshape(4, 3) ** 1.5)
    bad = {
        "X has 4 rows but Y has 3; CKA compares representations of the same inputs": (good, good[:3]),
        "X and Y have 1 row; centring needs at least 2 inputs": (good[:1], good[:1]),
        "every column of X is constant over the inputs": (as_input(np.full((4, 2), 2.0)), good),
        "every column of Y is constant over the inputs": (good, as_input(np.full((4, 5), -0.5))),
        "Y holds NaN or inf": (good, as_input(np.array([[1.0], [np.nan], [0.0], [2.0]]))),
        "X has shape (4,); give a 2-D array": (good[:, 0], good),
    }
    for sentence, args in bad.items():
        with pytest.raises(ValueError) as error:
            cka.linear_cka(*args)
        assert sentence in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ValueError, match="X should be a 2-D array of numbers"):
        cka.linear_cka("abc", good)


# --------------------------------------------------------------------------- 2. expected calibration error
def _binned_ece(index_of, how="weighted"):
    """An ECE whose bin assignment ``index_of(conf, n_bins)`` (-1: no bin) and combination of bins are the planted mistakes."""
    def expected_calibration_error(confidences, correct, n_bins=10):
        conf, right = np.asarray(confidences, dtype=np.float64), np.asarray(correct, dtype=np.float64)
        if len(conf) != len(right) or conf.min() < 0 or conf.max() > 1:
            raise ValueError("bad input")
        index = index_of(conf, n_bins)
        weights, gaps = [], []
        for b in range(n_bins):
            members = index == b
            if members.any():
                acc, mean_conf = right[members].mean(), conf[members].mean()
                if how == "midpoint":
                    mean_conf = (b + 0.5) / n_bins
                weights.append(members.sum() / len(conf))
                gaps.append(acc - mean_conf if how == "signed" else abs(acc - mean_conf))
            else:
                weights.append(0.0)
                gaps.append((b + 0.5) / n_bins if how == "empty_gap" else 0.0)
        weights, gaps = np.array(weights), np.array(gaps)
        if how in ("unweighted", "empty_gap"):
            return float(gaps.mean())
        if how == "nonempty":
            return float(gaps[weights > 0].mean())
        return float(np.sum(weights * gaps))
    return expected_calibration_error


def right_closed(conf, n_bins):
    return np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)


def test_expected_calibration_error_bugs():
    def left_closed(conf, n_bins):  # np.digitize's default: edges[i - 1] <= c < edges[i]
        return np.clip(np.digitize(conf, np.linspace(0, 1, n_bins + 1)) - 1, 0, n_bins - 1)

    def left_closed_loop(conf, n_bins):  # (c >= lo) & (c < hi): a confidence of 1 is in no bin
        index = np.floor(conf * n_bins).astype(int)
        return np.where(index == n_bins, -1, index)

    def zero_dropped(conf, n_bins):  # (c > lo) & (c <= hi)
        return np.ceil(conf * n_bins).astype(int) - 1

    def zero_last(confidences, correct, n_bins=10):  # index -1 wraps around to the last bin
        conf, right = np.asarray(confidences, dtype=np.float64), np.asarray(correct, dtype=np.float64)
        if len(conf) != len(right) or conf.min() < 0 or conf.max() > 1:
            raise ValueError("bad input")
        index = np.ceil(conf * n_bins).astype(int) - 1
        count, hits, total = np.zeros(n_bins), np.zeros(n_bins), np.zeros(n_bins)
        np.add.at(count, index, 1)
        np.add.at(hits, index, right)
        np.add.at(total, index, conf)
        used = count > 0
        return float(np.sum(np.abs(hits[used] - total[used])) / len(conf))

    def per_sample(confidences, correct, n_bins=10):
        ece_student(confidences, correct, n_bins)  # (refuses bad input)
        return float(np.mean(np.abs(np.asarray(confidences, dtype=np.float64) - np.asarray(correct, dtype=np.float64))))

    def ignores_n_bins(confidences, correct, n_bins=10):
        return ece_student(confidences, correct)

    def one_bin_fewer(confidences, correct, n_bins=10):
        return ece_student(confidences, correct, n_bins - 1)

    def percent(confidences, correct, n_bins=10):
        return 100 * ece_student(confidences, correct, n_bins)

    def default_15(confidences, correct, n_bins=15):
        return ece_student(confidences, correct, n_bins)

    def nan_in_empty_bins(confidences, correct, n_bins=10):
        conf, right = np.asarray(confidences, dtype=np.float64), np.asarray(correct, dtype=np.float64)
        index = right_closed(conf, n_bins)
        count = np.bincount(index, minlength=n_bins)
        with np.errstate(invalid="ignore"):
            gap = np.abs(np.bincount(index, right, n_bins) / count - np.bincount(index, conf, n_bins) / count)
        return float(np.sum(count / len(conf) * gap))

    def sorts_in_place(confidences, correct, n_bins=10):
        order = np.argsort(confidences)
        confidences.sort()
        return ece_student(confidences, np.asarray(correct)[order], n_bins)

    def truncates(confidences, correct, n_bins=10):
        n = min(len(confidences), len(correct))
        return ece_student(confidences[:n], correct[:n], n_bins)

    def accepts_any_confidence(confidences, correct, n_bins=10):
        conf = np.clip(np.asarray(confidences, dtype=np.float64), 0, 1)
        return ece_student(conf, correct, n_bins)

    def accepts_negative(confidences, correct, n_bins=10):
        if np.asarray(confidences).max() > 1:
            raise ValueError("confidence above 1")
        return ece_student(np.clip(np.asarray(confidences, dtype=np.float64), 0, 1), correct, n_bins)

    def torch_mean_of_booleans(confidences, correct, n_bins=10):
        conf, right = torch.as_tensor(confidences), torch.as_tensor(correct)
        right = right.double() if right.dtype == torch.int64 else right  # converts integer labels, forgets booleans
        index = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
        ece = 0.0
        for b in range(n_bins):
            members = index == b
            if members.any():
                ece += members.double().mean() * (right[members].mean() - conf[members].mean()).abs()
        return float(ece)

    check = checks.expected_calibration_error
    rejects(check, _binned_ece(left_closed), "confidences on the bin edges 0.25, 0.5 and 0.75", "lands in the bin above it")
    rejects(check, _binned_ece(left_closed_loop), "confidences on the bin edges", "the bins are (lo, hi]")
    rejects(check, _binned_ece(zero_dropped), "confidences of exactly 0 and exactly 1", "a confidence of exactly 0 counts in no bin")
    rejects(check, zero_last, "a confidence of exactly 0 lands in your last bin")
    rejects(check, _binned_ece(right_closed, "unweighted"), "n_bins left at its default", "you average the bins' gaps with equal weights")
    rejects(check, _binned_ece(right_closed, "nonempty"), "you average the gaps of the bins that hold samples with equal weights")
    rejects(check, _binned_ece(right_closed, "empty_gap"), "your ECE counts empty bins")
    rejects(check, _binned_ece(right_closed, "signed"), "you add signed gaps")
    rejects(check, lambda c, r, n_bins=10: -_binned_ece(right_closed, "signed")(c, r, n_bins), "you add signed gaps")  # conf - acc
    rejects(check, _binned_ece(right_closed, "midpoint"), "with the middle of the bin")
    rejects(check, per_sample, "you average |confidence - correct| over the samples")
    rejects(check, ignores_n_bins, "the same 200 samples with n_bins = 4", "your result does not depend on n_bins")
    rejects(check, one_bin_fewer, "you make n_bins - 1 bins")
    rejects(check, percent, "100 times too large")
    rejects(check, default_15, "n_bins left at its default", "the default is n_bins = 10")
    rejects(check, nan_in_empty_bins, "your ECE is nan: a bin without samples has no accuracy")
    rejects(check, sorts_in_place, "your function sorts confidences in place")
    rejects(check, truncates, "for confidences of length 5 and correct of length 4, your function returns",
            "instead of raising an error")
    rejects(check, accepts_any_confidence, "for a confidence of 1.5, your function returns", "probabilities in [0, 1]")
    rejects(check, accepts_negative, "for a confidence of -0.1, your function returns")
    rejects(check, torch_mean_of_booleans, "for 100 samples with confidences in every bin and boolean correct, n_bins = 10, "
            "calling torch_mean_of_booleans raised RuntimeError")
    rejects(check, lambda c, r, n_bins=10: ece_student(c, r, n_bins) * 0.9, "your ECE is", "(n_b / n) |acc(b) - conf(b)|")
    rejects(check, lambda c, r, n_bins=10: float("inf"), "your ECE is inf; run your function on a small example")
    rejects(check, lambda c, r, n_bins=10: np.full(2, ece_student(c, r, n_bins)), "a numpy array of shape (2)")
    rejects(check, lambda c, r, n_bins=10: None, "should be one number (a Python float), but it is a NoneType")


def _exact_ece(confidences, correct, n_bins):
    """ECE in exact rational arithmetic: bin b holds b/n_bins < c <= (b+1)/n_bins (0 in bin 0); no numpy."""
    bins = {}
    for c, y in zip(confidences, correct):
        c = Fraction(float(c))
        b = max(0, next(k for k in range(n_bins) if c <= Fraction(k + 1, n_bins)))
        bins.setdefault(b, []).append((c, Fraction(int(y))))
    n = len(confidences)
    total = sum(Fraction(len(items), n) * abs(sum(y for _, y in items) / len(items) - sum(c for c, _ in items) / len(items))
                for items in bins.values())
    return float(total)


def test_expected_calibration_error_reference_equals_an_exact_computation():
    rng = np.random.default_rng(11)
    for n, n_bins in ((1, 10), (7, 3), (50, 10), (200, 15), (33, 1)):
        conf = rng.random(n)
        conf[: n // 4] = rng.integers(0, 9, size=n // 4) / 8  # exact edges of 2, 4 and 8 bins, and 0 and 1
        right = rng.random(n) < conf
        expected = _exact_ece(conf, right, n_bins)
        assert calibration.expected_calibration_error(conf, right, n_bins) == pytest.approx(expected, abs=1e-12)
        assert calibration.expected_calibration_error(torch.tensor(conf), torch.tensor(right), n_bins) == pytest.approx(expected, abs=1e-12)
        assert calibration.expected_calibration_error(list(conf), right.astype(int).tolist(), n_bins) == pytest.approx(expected, abs=1e-12)
        bins = calibration.reliability_bins(conf, right, n_bins)
        assert bins["count"].sum() == n
    assert calibration.expected_calibration_error([0.0, 0.25, 0.5, 1.0], [1, 0, 1, 1], 4) == pytest.approx(
        _exact_ece([0.0, 0.25, 0.5, 1.0], [1, 0, 1, 1], 4))
    assert list(calibration.bin_index(np.array([0.0, 0.25, 0.2500001, 0.5, 0.75, 1.0]), 4)) == [0, 0, 1, 1, 2, 3]


@pytest.mark.parametrize("as_input", [np.asarray, torch.tensor], ids=["numpy", "torch"])
def test_expected_calibration_error_reference_refuses_bad_input_in_one_sentence(as_input):
    conf, right = as_input(np.array([0.2, 0.9, 0.6])), as_input(np.array([0, 1, 1]))
    bad = {
        "confidences has 3 samples but correct has 2; give one of each per sample": (conf, right[:2], 10),
        "confidences is empty; calibration needs at least one sample": (conf[:0], right[:0], 10),
        "confidences[1] is 1.5; confidences are probabilities in [0, 1]": (as_input(np.array([0.2, 1.5, 0.6])), right, 10),
        "confidences[0] is -0.2; confidences are probabilities in [0, 1]": (as_input(np.array([-0.2, 0.5, 0.6])), right, 10),
        "confidences[2] is not a finite number": (as_input(np.array([0.2, 0.5, np.nan])), right, 10),
        "correct[1] is not 0 or 1": (conf, as_input(np.array([1.0, 0.5, 0.0])), 10),
        "n_bins is 0; it must be a positive whole number of bins": (conf, right, 0),
        "n_bins is 2.5": (conf, right, 2.5),
        "n_bins is True": (conf, right, True),
        "confidences has shape (3, 1); give one number per sample": (conf[:, None], right, 10),
    }
    for sentence, args in bad.items():
        with pytest.raises(ValueError) as error:
            calibration.expected_calibration_error(*args)
        assert sentence in str(error.value) and "\n" not in str(error.value)
    assert calibration.expected_calibration_error(conf, as_input(np.array([False, True, True]))) == \
        calibration.expected_calibration_error(conf, right)  # booleans and 0/1 integers alike
