"""Synthetic champions for tests and benchmarks.

Imports ``onnx`` (a build-time dependency), so it is never imported on the prediction path. The model is
``rent = a · surface^b · m(district)`` with ``low/high = rent · exp(∓k)``: a log-scale 90 % interval.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from rentlake.lake import Lake, keys


def make_onnx_model(
    a: float = 118.0,
    b: float = 0.68,
    k: float = 0.4,
    district_factors: Mapping[str, float] | None = None,
) -> bytes:
    """Serialize a small ONNX model honouring the serving contract.

    Parameters
    ----------
    a, b
        ``rent = a · surface^b``.
    k
        Half-width of the interval on the log scale: ``low = rent·e^-k``, ``high = rent·e^k``.
    district_factors
        If given, the model also takes a ``district`` string input and multiplies the rent by the
        district's factor (1 for an unknown district).

    Returns
    -------
    bytes
        The ONNX file.
    """
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("surface_m2", f32, [None, 1])]
    inits = [
        helper.make_tensor("log_a", f32, [], [math.log(a)]),
        helper.make_tensor("b", f32, [], [b]),
        helper.make_tensor("exp_mk", f32, [], [math.exp(-k)]),
        helper.make_tensor("exp_k", f32, [], [math.exp(k)]),
    ]
    nodes = [
        helper.make_node("Log", ["surface_m2"], ["log_s"]),
        helper.make_node("Mul", ["log_s", "b"], ["b_log_s"]),
        helper.make_node("Add", ["b_log_s", "log_a"], ["log_rent0"]),
    ]
    opsets = [helper.make_opsetid("", 17)]
    if district_factors:
        _add_district(district_factors, inputs, inits, nodes)
        opsets.append(helper.make_opsetid("ai.onnx.ml", 3))
    else:
        nodes.append(helper.make_node("Identity", ["log_rent0"], ["log_rent"]))
    nodes += [
        helper.make_node("Exp", ["log_rent"], ["rent_eur"]),
        helper.make_node("Mul", ["rent_eur", "exp_mk"], ["low"]),
        helper.make_node("Mul", ["rent_eur", "exp_k"], ["high"]),
    ]
    outputs = [helper.make_tensor_value_info(n, f32, [None, 1]) for n in ("rent_eur", "low", "high")]
    graph = helper.make_graph(nodes, "rent", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=opsets, producer_name="rentlake-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _add_district(
    factors: Mapping[str, float], inputs: list[Any], inits: list[Any], nodes: list[Any]
) -> None:
    """The district input of :func:`make_onnx_model`: ``log_rent = log_rent0 + log(factor)`` (0 unknown)."""
    names = sorted(factors)
    inputs.append(helper.make_tensor_value_info("district", TensorProto.STRING, [None, 1]))
    offsets = [0.0] + [math.log(factors[d]) for d in names]
    inits.append(helper.make_tensor("offsets", TensorProto.FLOAT, [len(offsets)], offsets))
    nodes += [
        helper.make_node(
            "CategoryMapper",
            ["district"],
            ["district_idx"],
            domain="ai.onnx.ml",
            cats_strings=names,
            cats_int64s=list(range(1, len(names) + 1)),
            default_int64=0,
        ),
        helper.make_node("Gather", ["offsets", "district_idx"], ["offset"]),
        helper.make_node("Add", ["log_rent0", "offset"], ["log_rent"]),
    ]


def expected_rent(surface: float, a: float = 118.0, b: float = 0.68, factor: float = 1.0) -> float:
    """What :func:`make_onnx_model` answers for one surface (float64, for assertions)."""
    return a * surface**b * factor


def make_card(
    version: str,
    *,
    surface_range: tuple[float, float] = (9.0, 250.0),
    districts: Sequence[str] = (),
    scale: str = "log",
    plot_sample: Sequence[Sequence[float]] | None = None,
) -> dict[str, Any]:
    """A model card as the training pipeline writes it (``plot_sample``: optional training points)."""
    features = ["surface_m2"] + (["district"] if districts else [])
    ranges: dict[str, Any] = {"surface_m2": {"min": surface_range[0], "max": surface_range[1]}}
    if districts:
        ranges["district"] = list(districts)
    return {
        "version": version,
        "trained_at": "2026-05-01T12:00:00+00:00",
        "model_name": "synthetic_power_law",
        "metrics": {"mae_eur": 150.0, "coverage_90": 0.9},
        "features": features,
        "feature_ranges": ranges,
        "interval": {"level": 0.9, "method": "synthetic", "scale": scale},
        **({"plot_sample": [list(p) for p in plot_sample]} if plot_sample is not None else {}),
    }


def publish_champion(
    lake: Lake,
    version: str,
    model_bytes: bytes,
    card: Mapping[str, Any] | None = None,
    *,
    sha256: str | None = None,
    legal: bytes | None = None,
    legal_sha256: str | None = None,
) -> dict[str, Any]:
    """Write a model and its card to the registry and point ``models/champion.json`` at it.

    Parameters
    ----------
    lake
        The lake.
    version
        Model version.
    model_bytes
        The ONNX file.
    card
        The card (default: :func:`make_card`).
    sha256
        Override the pointer's checksum (to simulate corruption).
    legal
        A legal reference artifact (:func:`rentlake.reference.artifact_bytes`): written to
        ``models/<version>/legal.json`` and named in the pointer (``legal_key``, ``legal_sha256``) as the
        registry does at promotion.
    legal_sha256
        Override the pointer's ``legal_sha256`` (to simulate a corrupt table).

    Returns
    -------
    dict
        The pointer written.
    """
    model_key = keys.model_file(version, "model.onnx")
    card_key = keys.model_file(version, "card.json")
    lake.put_bytes(model_key, model_bytes)
    lake.put_json(card_key, dict(card) if card is not None else make_card(version))
    pointer = {
        "version": version,
        "model_key": model_key,
        "sha256": sha256 or hashlib.sha256(model_bytes).hexdigest(),
        "card_key": card_key,
        "promoted_at": datetime.now(UTC).isoformat(),
    }
    if legal is not None:
        legal_key = keys.model_file(version, "legal.json")
        lake.put_bytes(legal_key, legal)
        pointer["legal_key"] = legal_key
        pointer["legal_sha256"] = legal_sha256 or hashlib.sha256(legal).hexdigest()
    lake.put_json(keys.champion(), pointer)
    return pointer


def sample_surfaces(n: int, seed: int = 0) -> np.ndarray:
    """Plausible Paris surfaces (m²), log-normal around 40 m²."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(math.log(40.0), 0.5, n), 9.0, 250.0)
