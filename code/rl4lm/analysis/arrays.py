"""The one conversion of the analysis modules' numeric inputs: a list, numpy array or torch tensor to float64 numpy."""
from __future__ import annotations

import numpy as np


def float64_array(values, name: str, expected: str) -> np.ndarray:
    """A float64 numpy copy of a list, array or tensor (moved to the CPU), or a ValueError "<name> should be <expected>, not <type>"."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    try:
        return np.array(values, dtype=np.float64)  # a copy: the caller's data is never changed
    except (TypeError, ValueError):
        raise ValueError(f"{name} should be {expected}, not {type(values).__name__}.") from None
