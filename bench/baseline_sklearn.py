"""Baseline for ``bench/bench_predict.py``: the same API serving a joblib-pickled scikit-learn model.

``LinearRegression`` on log-rent vs log-surface, the 90 % interval computed in Python from the residual
spread (what a first, non-ONNX version of the service would do). Importable by path like
``functions/predict/app.py``: it exposes ``handler`` and reads ``RENTLAKE_BUCKET`` at import.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rentlake.lake import Lake, keys
from rentlake.observability import logger, metrics
from rentlake.runtime.api import build_app, observed_resolve
from rentlake.runtime.model import Z_90, ModelCard

VERSION = "baseline-sklearn"
MODEL_KEY = keys.model_file(VERSION, "model.joblib")


def train_and_upload(lake: Lake, n: int = 2000, seed: int = 0) -> None:
    """Fit the baseline on synthetic listings and store it (joblib) in the lake."""
    import joblib
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(seed)
    surface = np.clip(rng.lognormal(math.log(40), 0.5, n), 9, 250)
    log_rent = math.log(118.0) + 0.68 * np.log(surface) + rng.normal(0, 0.4 / Z_90, n)
    reg = LinearRegression().fit(np.log(surface).reshape(-1, 1), log_rent)
    sigma = float(np.std(log_rent - reg.predict(np.log(surface).reshape(-1, 1))))
    buf = io.BytesIO()
    joblib.dump({"model": reg, "sigma": sigma, "range": (float(surface.min()), float(surface.max()))}, buf)
    lake.put_bytes(MODEL_KEY, buf.getvalue())


@dataclass(frozen=True)
class SklearnModel:
    """Duck-types :class:`rentlake.runtime.model.LoadedModel` for ``estimate``.

    Same attributes, sklearn inside.
    """

    reg: Any
    sigma: float
    card: ModelCard
    pointer: dict[str, Any] = field(default_factory=lambda: {"version": VERSION})
    uses_district: bool = False
    z: float = Z_90
    version: str = VERSION

    def predict(
        self, surface_m2: np.ndarray, district: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        log_rent = self.reg.predict(np.log(np.asarray(surface_m2, dtype=np.float64)).reshape(-1, 1))
        half = Z_90 * self.sigma
        return np.exp(log_rent), np.exp(log_rent - half), np.exp(log_rent + half)


class SklearnCache:
    """Loads the pickled model once (same caching as the ONNX path, without refresh)."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._model: SklearnModel | None = None

    def peek(self) -> SklearnModel | None:
        return self._model

    def get(self) -> SklearnModel:
        if self._model is None:
            import joblib

            blob = joblib.load(io.BytesIO(self.lake.get_bytes(MODEL_KEY)))
            lo, hi = blob["range"]
            card = ModelCard.from_dict(
                {
                    "version": VERSION,
                    "model_name": "LinearRegression(log)",
                    "features": ["surface_m2"],
                    "feature_ranges": {"surface_m2": {"min": lo, "max": hi}},
                    "interval": {"level": 0.9, "method": "normal residuals", "scale": "log"},
                },
                VERSION,
            )
            self._model = SklearnModel(reg=blob["model"], sigma=blob["sigma"], card=card)
        return self._model


app = build_app(SklearnCache(Lake(os.environ.get("RENTLAKE_BUCKET", "unset-bucket"))))  # type: ignore[arg-type]


log = logger("predict-baseline")
metric = metrics("predict-baseline")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda-style entry point, as in ``functions/predict/app.py`` (same logs and metrics)."""
    return observed_resolve(app, event, context, log=log, metric=metric)
