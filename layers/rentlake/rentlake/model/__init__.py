"""Pure modelling library for rentlake: train, intervals, ONNX export, evaluation, diagnostics, gate.

Nothing here touches S3 or AWS: callers pass pandas DataFrames and persist what is returned (the
train and evaluate stages, :mod:`rentlake.stages`). Figures and the card's page are drawn by
:mod:`rentlake.reporting`. Heavy dependencies (scikit-learn, skl2onnx, scipy) are imported inside the
functions that need them so that importing the package has no side effects.
"""

from __future__ import annotations

__all__ = ["InsufficientDataError", "MIN_ROWS", "MIN_HELDOUT_ROWS", "LEVEL"]

#: Minimum number of usable rows to train or diagnose anything meaningful.
MIN_ROWS = 20
#: The gate decides on no fewer held-out rows. At 80 rows a calibrated 90 % interval passes the
#: [0.85, 0.95] coverage check 91 % of the time and one covering 75 % passes 2 % of the time (exact
#: binomial); at 50 rows a calibrated model would fail by chance one time in four. Below it, a model is a
#: "small sample": promoted only as the first model of a lake, and marked so on its card and answers.
MIN_HELDOUT_ROWS = 80
#: Nominal level of every served interval.
LEVEL = 0.9


class InsufficientDataError(ValueError):
    """The data cannot support a model: too few rows, one distinct surface, constant or missing values."""
