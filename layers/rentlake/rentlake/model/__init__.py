"""Pure modelling library for rentlake: train, intervals, ONNX export, evaluation, diagnostics, gate.

Nothing here touches S3 or AWS: callers pass pandas DataFrames and persist what is returned (the
train and evaluate stages, :mod:`rentlake.stages`). Figures and the card's page are drawn by
:mod:`rentlake.reporting`. Heavy dependencies (scikit-learn, skl2onnx, scipy) are imported inside the
functions that need them so that importing the package has no side effects.
"""

from __future__ import annotations

__all__ = ["InsufficientDataError", "MIN_ROWS", "LEVEL"]

#: Minimum number of usable rows to train or diagnose anything meaningful.
MIN_ROWS = 20
#: Nominal level of every served interval.
LEVEL = 0.9


class InsufficientDataError(ValueError):
    """The data cannot support a model: too few rows, one distinct surface, constant or missing values."""
