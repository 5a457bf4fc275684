"""Baseline for ``bench/bench_predict.py``: the same API serving a joblib-pickled scikit-learn model.

``LinearRegression`` on log-rent vs log-surface, the 90 % interval computed in Python from the residual
spread (what a first, non-ONNX version of the service would do). Importable by path like
``functions/predict/app.py``: it exposes ``handler`` and reads ``RENTLAKE_BUCKET`` at import, when it
points the process's API (:data:`rentlake.runtime.routes.CHAMPION`) at the sklearn model, as the predict
function's module points it at the ONNX one: import one or the other before measuring it.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from aws_lambda_powertools.logging import correlation_paths
from rentlake.lake import Lake, keys
from rentlake.runtime.champion import LoadedModel, ModelCard
from rentlake.runtime.interval import Z_90
from rentlake.runtime.resolver import logger, metrics
from rentlake.runtime.routes import CHAMPION, app

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
class SklearnModel(LoadedModel):
    """A champion whose inference is scikit-learn's (no ONNX session): the API serves it unchanged."""

    reg: Any = None
    sigma: float = 0.0

    def predict(
        self, surface_m2: np.ndarray, district: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        log_rent = self.reg.predict(np.log(np.asarray(surface_m2, dtype=np.float64)).reshape(-1, 1))
        half = Z_90 * self.sigma
        return np.exp(log_rent), np.exp(log_rent - half), np.exp(log_rent + half)


def load_sklearn(lake: Lake, pointer: Mapping[str, Any]) -> SklearnModel:
    """The champion cache's loader for the baseline: the pickled model, whatever the pointer names."""
    import joblib

    blob = joblib.load(io.BytesIO(lake.get_bytes(MODEL_KEY)))
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
    return SklearnModel(
        session=None,
        card=card,
        pointer={"version": VERSION},
        uses_district=False,
        z=Z_90,
        reg=blob["model"],
        sigma=blob["sigma"],
    )


# Loaded once, never refreshed (the ONNX path re-reads its pointer every minute: a few µs per request).
CHAMPION.use_lake(
    Lake(os.environ.get("RENTLAKE_BUCKET", "unset-bucket")), refresh_seconds=math.inf, loader=load_sklearn
)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda-style entry point, as in ``functions/predict/app.py`` (same logs and metrics)."""
    return app.resolve(event, context)
