"""Held-out metrics and scoring of exported ONNX models."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

__all__ = ["metrics", "score_onnx", "onnx_feeds"]


def metrics(y_true: ArrayLike, estimate: ArrayLike, low: ArrayLike, high: ArrayLike) -> dict[str, float]:
    """Point and interval metrics on held-out data.

    Parameters
    ----------
    y_true, estimate, low, high : array-like of float
        Observed rents, point estimates and interval bounds (same length).

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``r2``, ``mape`` (fraction, not %), ``coverage`` (share of rents inside
        [low, high]), ``mean_width`` (€) and ``n``. ``r2`` is NaN when the rents are constant.
    """
    y = np.asarray(y_true, dtype=float).ravel()
    e = np.asarray(estimate, dtype=float).ravel()
    lo = np.asarray(low, dtype=float).ravel()
    hi = np.asarray(high, dtype=float).ravel()
    if not (y.size == e.size == lo.size == hi.size):
        raise ValueError("y_true, estimate, low and high must have the same length")
    if y.size == 0:
        raise ValueError("cannot compute metrics on zero rows")
    err = e - y
    sst = float(((y - y.mean()) ** 2).sum())
    return {
        "n": int(y.size),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": float(1.0 - (err @ err) / sst) if sst > 0 else float("nan"),
        "mape": float(np.mean(np.abs(err) / np.abs(y))),
        "coverage": float(np.mean((y >= lo) & (y <= hi))),
        "mean_width": float(np.mean(hi - lo)),
    }


def onnx_feeds(input_names: list[str], df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Build onnxruntime feeds for the inputs a graph declares (``surface_m2`` and maybe ``district``).

    Parameters
    ----------
    input_names : list of str
        Graph input names.
    df : pandas.DataFrame
        Must hold ``surface_m2``; ``district`` is optional (missing values become unknown districts).

    Returns
    -------
    dict
        ``name -> array`` with shape ``[n, 1]`` (float32 or str objects).
    """
    feeds: dict[str, np.ndarray] = {}
    for name in input_names:
        if name == "surface_m2":
            feeds[name] = df["surface_m2"].to_numpy(dtype=np.float32).reshape(-1, 1)
        elif name == "district":
            col = df["district"] if "district" in df.columns else pd.Series([""] * len(df), index=df.index)
            feeds[name] = (
                col.astype("object").where(col.notna(), "").astype(str).to_numpy(object).reshape(-1, 1)
            )
        else:
            raise ValueError(f"the model declares an unexpected input {name!r}")
    return feeds


def score_onnx(onnx_bytes: bytes, df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Run an exported model with onnxruntime on a DataFrame.

    Parameters
    ----------
    onnx_bytes : bytes
        Serialised model from :func:`rentlake.model.export.to_onnx`.
    df : pandas.DataFrame
        Rows to score; only the inputs the graph declares are fed.

    Returns
    -------
    dict
        ``{"rent_eur": ..., "low": ..., "high": ...}`` as 1-D float arrays.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # the Lambda and the CI machines have few cores; avoid oversubscription
    sess = ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    outs = sess.run(None, onnx_feeds(names, df))
    return {o.name: np.asarray(v, dtype=float).ravel() for o, v in zip(sess.get_outputs(), outs, strict=True)}
