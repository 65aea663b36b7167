"""What every explanation method computes: attributions over the model's own (derived) columns.

Its own module so that ``explain`` (which picks a method) and ``native_boosters`` (two of the methods) both
import it and neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Attribution:
    """Margin- or probability-space attributions over the model's own (derived) columns."""

    phi: Floats  # [N, K, F]
    base: Floats  # [N, K]
    link: str  # "identity" (already probabilities), "sigmoid" (K = 1) or "softmax"
    proba: Floats | None = None  # [N, C] when the attribution computed the model's output itself
