"""Request -> answer logic: vectorised inference, warnings, verdicts, percentiles (no S3 needed)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any

import pytest
from rentlake.runtime.champion import LoadedModel, build_model
from rentlake.runtime.estimator import estimates_for
from rentlake.runtime.interval import Z_90, percentile_of, verdict_of
from rentlake.runtime.testing import expected_rent, make_card, make_onnx_model

K = 0.4  # log half-width of the synthetic interval


@dataclass
class Item:
    surface_m2: float
    district: str | None = None
    current_rent_eur: float | None = None


def _model(
    districts: dict[str, float] | None = None,
    scale: str = "log",
    surface_range: tuple[float, float] = (9.0, 250.0),
) -> LoadedModel:
    data = make_onnx_model(k=K, district_factors=districts)
    pointer = {
        "version": "v7",
        "model_key": "models/v7/model.onnx",
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    card = make_card("v7", surface_range=surface_range, districts=sorted(districts or {}), scale=scale)
    return build_model(pointer, data, card)


class CountingSession:
    """Wraps an InferenceSession and counts ``run`` calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.rows: list[int] = []

    def run(self, outputs: Any, feeds: dict[str, Any]) -> Any:
        self.calls += 1
        self.rows.append(feeds["surface_m2"].shape[0])
        return self.inner.run(outputs, feeds)


def test_batch_of_listings_is_one_onnxruntime_call() -> None:
    # GIVEN 1 000 listings
    model = _model()
    counting = CountingSession(model.session)
    model = dataclasses.replace(model, session=counting)
    listings = [Item(surface_m2=10.0 + i / 10) for i in range(1000)]
    # WHEN estimated
    answers = estimates_for(model, listings)
    # THEN one inference call for all rows, and each answer follows the law (rounded to the euro)
    assert counting.calls == 1 and counting.rows == [1000]
    assert len(answers) == 1000
    for item, ans in zip(listings[::97], answers[::97], strict=True):
        assert ans["rent_eur"] == round(expected_rent(item.surface_m2))
        assert ans["interval"]["low"] == pytest.approx(expected_rent(item.surface_m2) * math.exp(-K), abs=1)
        assert ans["interval"]["high"] == pytest.approx(expected_rent(item.surface_m2) * math.exp(K), abs=1)


def test_answer_for_30_m2_has_all_fields() -> None:
    # GIVEN the course's example: 30 m2, paying 1 500
    model = _model()
    # WHEN estimated
    (ans,) = estimates_for(model, [Item(30.0, current_rent_eur=1500.0)])
    # THEN about 1 190 €/month, a 90 % interval, a verdict and a percentile from the log-normal law
    rent = expected_rent(30.0)
    assert ans["rent_eur"] == round(rent) == 1192
    assert ans["interval"] == {
        "low": round(rent * math.exp(-K)),
        "high": round(rent * math.exp(K)),
        "level": 0.9,
    }
    assert ans["model_version"] == "v7"
    assert ans["warnings"] == []
    assert ans["verdict"] == "within"
    sigma = K / Z_90
    expected_pct = 100 * 0.5 * (1 + math.erf(math.log(1500 / rent) / sigma / math.sqrt(2)))
    assert ans["percentile"] == pytest.approx(expected_pct, abs=0.06)


def test_no_verdict_without_current_rent() -> None:
    (ans,) = estimates_for(_model(), [Item(30.0)])
    assert "verdict" not in ans and "percentile" not in ans


@pytest.mark.parametrize(("rent", "verdict"), [(5000.0, "above"), (300.0, "below"), (1192.0, "within")])
def test_verdict_against_interval(rent: float, verdict: str) -> None:
    # GIVEN a current rent far above, far below, at the centre
    (ans,) = estimates_for(_model(), [Item(30.0, current_rent_eur=rent)])
    # THEN the verdict and the percentile's side agree
    assert ans["verdict"] == verdict
    assert (ans["percentile"] > 95, ans["percentile"] < 5) == (verdict == "above", verdict == "below")


def test_percentile_at_interval_bounds_is_5_and_95() -> None:
    # GIVEN the bounds of a 90 % interval THEN they sit at the 5th and 95th percentiles, both scales
    assert percentile_of(800.0, 800.0, 1800.0, Z_90, "log") == pytest.approx(5.0, abs=1e-6)
    assert percentile_of(1800.0, 800.0, 1800.0, Z_90, "log") == pytest.approx(95.0, abs=1e-6)
    assert percentile_of(1300.0, 800.0, 1800.0, Z_90, "linear") == pytest.approx(50.0, abs=1e-9)
    assert percentile_of(math.sqrt(800 * 1800), 800.0, 1800.0, Z_90, "log") == pytest.approx(50.0, abs=1e-9)
    assert percentile_of(0.0, 800.0, 1800.0, Z_90, "log") == 0.0
    assert percentile_of(1000.0, 900.0, 900.0, Z_90, "linear") is None


def test_verdict_bounds_are_within() -> None:
    assert [verdict_of(r, 800, 1800) for r in (800, 1800, 799.9, 1800.1)] == [
        "within",
        "within",
        "below",
        "above",
    ]


def test_linear_scale_card_gives_linear_percentile() -> None:
    # GIVEN a card declaring a linear interval
    model = _model(scale="linear")
    rent = expected_rent(30.0)
    lo, hi = rent * math.exp(-K), rent * math.exp(K)
    # WHEN the rent is at the arithmetic midpoint THEN it is the median
    (ans,) = estimates_for(model, [Item(30.0, current_rent_eur=(lo + hi) / 2)])
    assert ans["percentile"] == pytest.approx(50.0, abs=0.1)


def test_surface_outside_trained_range_is_answered_with_a_warning_naming_the_range() -> None:
    # GIVEN a model trained on 9-250 m2
    (small, big, ok) = estimates_for(_model(), [Item(5.0), Item(400.0), Item(30.0)])
    # THEN both extremes are answered, with a warning naming the range
    assert small["rent_eur"] == round(expected_rent(5.0))
    assert big["rent_eur"] == round(expected_rent(400.0))
    assert small["warnings"] == [
        "surface_m2 5 is outside the range the model was trained on (9–250 m²); "
        "the estimate is an extrapolation"
    ]
    assert "(9–250 m²)" in big["warnings"][0]
    assert ok["warnings"] == []


def test_surfaces_at_the_trained_bounds_are_not_extrapolations() -> None:
    # GIVEN a model trained on 9.7–250.3 m²
    model = _model(surface_range=(9.7, 250.3))
    # WHEN listings at both bounds and just beyond are estimated together (250.30001 and 250.3 are the
    # same float32: the range check must use the surfaces as given, not the model's float32 input)
    answers = estimates_for(model, [Item(9.7), Item(250.3), Item(250.30001), Item(9.69)])
    # THEN only the two beyond the bounds carry the extrapolation warning
    flagged = [any("extrapolation" in w for w in a["warnings"]) for a in answers]
    assert flagged == [False, False, True, True]


def test_districts_known_unknown_missing() -> None:
    # GIVEN a model using the district (75006 costs 1.3x)
    model = _model({"75006": 1.3, "75019": 0.85})
    known, unknown, missing = estimates_for(model, [Item(30.0, "75006"), Item(30.0, "Atlantis"), Item(30.0)])
    # THEN a known district moves the estimate, an unseen one is answered with a warning
    assert known["rent_eur"] == round(expected_rent(30.0, factor=1.3))
    assert known["warnings"] == []
    assert unknown["rent_eur"] == round(expected_rent(30.0))
    assert unknown["warnings"] == ["district 'Atlantis' was not seen in training: the estimate ignores it"]
    assert missing["warnings"] == ["no district given: the estimate is for a typical district"]


def test_district_given_to_a_surface_only_model_is_ignored_with_a_warning() -> None:
    (ans,) = estimates_for(_model(), [Item(30.0, "75006")])
    assert ans["rent_eur"] == round(expected_rent(30.0))
    assert ans["warnings"] == ["district is not used by model v7: ignored"]


def test_model_card_with_bad_scale_is_refused() -> None:
    # GIVEN a card with an unknown interval scale
    from rentlake.runtime.errors import ModelUnavailable

    data = make_onnx_model()
    card = make_card("v1")
    card["interval"]["scale"] = "cubic"
    pointer = {"version": "v1", "model_key": "k", "sha256": hashlib.sha256(data).hexdigest()}
    # THEN the model is not served
    with pytest.raises(ModelUnavailable, match="cubic"):
        build_model(pointer, data, card)


def test_listing_without_legal_fields_gets_the_hint_alone_and_batches_say_it_once() -> None:
    # GIVEN listings that know nothing of the legal fields (plain objects with surface, district, rent)
    from rentlake.runtime.estimator import batch_hint

    (single,) = estimates_for(_model(), [Item(30.0)], batch=False)
    batch = estimates_for(_model(), [Item(30.0), Item(40.0)])
    # THEN a single answer names the fields that would add the legal answer; a batch's listings do not,
    # and the batch carries that hint once
    assert single["legal_hint"].startswith("add quartier, rooms, built")
    assert all("legal_hint" not in a and "legal" not in a for a in batch)
    assert batch_hint(batch) == {"legal_hint": single["legal_hint"]}
    assert batch_hint([single]) == {}


def test_a_small_sample_model_says_so_in_every_answer() -> None:
    # GIVEN a champion whose card marks it a small sample (the first model of a lake of 28 listings)
    data = make_onnx_model(k=K)
    digest = hashlib.sha256(data).hexdigest()
    pointer = {"version": "v1", "model_key": "models/v1/model.onnx", "sha256": digest}
    message = "small sample: judged on 6 held-out listings (fewer than 80); the estimate is rough"
    small = {"heldout_rows": 6, "min_heldout_rows": 80, "message": message}
    card = {**make_card("v1"), "small_sample": small}
    model = build_model(pointer, data, card)
    # WHEN a listing is estimated THEN its warnings carry the card's message
    [ans] = estimates_for(model, [Item(surface_m2=30.0)])
    assert ans["warnings"] == [message]
