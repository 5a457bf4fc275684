"""ONNX export: signature, self-containment and parity with the Python models (GIVEN / WHEN / THEN)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import onnx
import pandas as pd
import pytest
from rentlake.model.evaluate import score_onnx
from rentlake.model.export import onnx_signature
from rentlake.model.train import TrainResult, train


def listings(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    s = rng.uniform(12, 150, n)
    d = rng.integers(0, 3, n)
    rent = np.exp(np.log(38.0) + 0.92 * np.log(s) + np.array([-0.15, 0.0, 0.2])[d] + rng.normal(0, 0.2, n))
    return pd.DataFrame(
        {"rent_eur": rent, "surface_m2": s, "district": np.array(["75011", "75015", "75007"])[d]}
    )


@pytest.fixture(scope="module")
def result() -> TrainResult:
    return train(
        listings(600, 11),
        seed=5,
        trained_at=datetime(2026, 1, 1, tzinfo=UTC),
        gbr_estimators=40,
        make_files=False,
    )


def test_every_candidate_family_exports_with_parity(result: TrainResult) -> None:
    # GIVEN the six fitted candidates: log scale (ols, huber, ols_district, gbr) and linear scale with a
    # modelled spread (linear, linear_district), each with its band table
    assert set(result.candidates) == {"ols", "linear", "huber", "ols_district", "linear_district", "gbr"}
    test = result.test_set
    # surfaces on both sides of every band edge, unknown and missing districts, tiny and huge flats
    edges = sorted({e for c in result.candidates.values() for e in c.bands.edges})
    probe = pd.DataFrame(
        {
            "surface_m2": [9.0, 10.0, 400.0, 1000.0]
            + [e for e in edges]
            + [np.nextafter(e, 0) for e in edges],
        }
    )
    probe["district"] = (["75011", "75015", "75007", "nowhere", None, ""] * len(probe))[: len(probe)]
    for name, cand in result.candidates.items():
        # WHEN each is exported and run with onnxruntime
        blob = cand.to_onnx()
        onnx.checker.check_model(onnx.load_from_string(blob), full_check=True)
        for rows in (test, probe):
            got = score_onnx(blob, rows)
            want = cand.predict(rows)
            # THEN all three outputs match the Python model within 1e-4 (relative, of at least 1 €)
            for k in ("rent_eur", "low", "high"):
                rel = np.max(np.abs(got[k] - want[k]) / np.maximum(np.abs(want[k]), 1.0))
                assert rel <= 1e-4, f"{name}.{k}: max relative difference {rel:.2e}"
            # AND no bound is ever below 0 €
            assert (got["low"] >= 0).all() and (got["low"] <= got["rent_eur"]).all()


def test_signature_declares_district_only_when_used(result: TrainResult) -> None:
    # GIVEN a surface-only candidate and a district candidate
    plain = onnx_signature(result.candidates["ols"].to_onnx())
    with_d = onnx_signature(result.candidates["ols_district"].to_onnx())
    # THEN inputs, types, shapes and output names are exactly the contract
    assert plain["inputs"] == [{"name": "surface_m2", "type": "tensor(float)", "shape": [None, 1]}]
    assert with_d["inputs"][1] == {"name": "district", "type": "tensor(string)", "shape": [None, 1]}
    for sig in (plain, with_d):
        assert sig["output_names"] == ["rent_eur", "low", "high"]
        assert all(o["type"] == "tensor(float)" and o["shape"] == [None, 1] for o in sig["outputs"])
        assert sig["opset"]["ai.onnx"] <= 17


def test_served_graph_is_self_contained_with_numpy_and_onnxruntime_only(result: TrainResult) -> None:
    import onnxruntime as ort

    # GIVEN the served bytes WHEN run directly with onnxruntime and numpy feeds
    sess = ort.InferenceSession(result.onnx, providers=["CPUExecutionProvider"])
    feeds = {"surface_m2": np.array([[9.0], [30.0], [300.0]], dtype=np.float32)}
    if "district" in result.features:
        feeds["district"] = np.array([["75011"], ["not-a-district"], [""]], dtype=object)
    rent, low, high = sess.run(["rent_eur", "low", "high"], feeds)
    # THEN shapes are [N, 1], bounds are never below 0 € and ordered, even out of range and for unknown
    # districts
    assert rent.shape == low.shape == high.shape == (3, 1) and rent.dtype == np.float32
    assert (low >= 0).all() and (low < rent).all() and (rent < high).all()


def test_score_onnx_feeds_only_declared_inputs(result: TrainResult) -> None:
    # GIVEN a surface-only graph and a frame with extra columns and no district
    blob = result.candidates["huber"].to_onnx()
    df = pd.DataFrame({"surface_m2": [20.0, 45.0], "whatever": ["a", "b"]})
    # WHEN scored THEN the three outputs come back as 1-D arrays
    out = score_onnx(blob, df)
    assert set(out) == {"rent_eur", "low", "high"} and out["rent_eur"].shape == (2,)
    # AND a district graph scores a frame with missing districts (treated as unknown)
    out = score_onnx(
        result.candidates["ols_district"].to_onnx(), pd.DataFrame({"surface_m2": [20.0], "district": [None]})
    )
    assert np.isfinite(out["rent_eur"]).all()
