"""Linear centred kernel alignment (CKA), a similarity of two sets of representations of the same inputs (Kornblith et al., 2019).

For representations X (n, p1) and Y (n, p2) of the same n inputs, with every column centred,

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)        (Kornblith et al., 2019, eq. 5)

It lies in [0, 1], is 1 for X against itself, and does not change under an orthogonal transform or an isotropic scaling
of either X or Y, so it compares layers of different models (or widths) without aligning their units first.
"""
from __future__ import annotations

import numpy as np

from .arrays import float64_array


def _as_matrix(values, name: str) -> np.ndarray:
    """A 2-D float64 copy of a numpy array or torch tensor, or a one-sentence ValueError naming ``name``."""
    array = float64_array(values, name, "a 2-D array of numbers (inputs x features)")
    if array.ndim != 2:
        raise ValueError(f"{name} has shape {tuple(array.shape)}; give a 2-D array with one row per input and one column per "
                         "feature.")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or inf; give finite representations.")
    return array


def centre_columns(x: np.ndarray) -> np.ndarray:
    """X - 1 mean(X): every feature (column) centred over the n inputs (rows), as CKA requires (Kornblith et al., 2019)."""
    return x - x.mean(axis=0, keepdims=True)


def linear_cka(X, Y) -> float:
    """Linear CKA, ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) with centred columns (Kornblith et al., 2019, eq. 5).

    ``X`` (n, p1) and ``Y`` (n, p2): representations of the same n inputs, as numpy arrays or torch tensors; the columns
    are centred here, so the caller need not. A constant column becomes zero and changes nothing; a matrix whose every
    column is constant has no variation to compare and raises. Different n in X and Y, n < 2, NaN or inf raise a ValueError
    of one sentence. Computed in float64; returns a Python float in [0, 1].
    """
    x, y = _as_matrix(X, "X"), _as_matrix(Y, "Y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X has {x.shape[0]} rows but Y has {y.shape[0]}; CKA compares representations of the same inputs, "
                         "one row per input in both.")
    if x.shape[0] < 2:
        raise ValueError(f"X and Y have {x.shape[0]} row; centring needs at least 2 inputs (one input is always 0 after centring).")
    for name, m in (("X", x), ("Y", y)):
        if not np.any(np.ptp(m, axis=0)):  # every column constant (tested before centring, which leaves roundoff such as 1e-17)
            raise ValueError(f"every column of {name} is constant over the inputs, so it is 0 after centring and CKA is 0/0; "
                             "check that the inputs differ and the representations were taken from them.")
    x, y = centre_columns(x), centre_columns(y)
    cross = np.linalg.norm(y.T @ x, "fro") ** 2  # ||Y^T X||_F^2
    return min(1.0, float(cross / (np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro"))))  # 1 + 2e-16 is roundoff
