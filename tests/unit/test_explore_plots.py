"""The exploration's figures draw a bounded number of points, however many rows are explored
(GIVEN / WHEN / THEN)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from rentlake import reporting
from rentlake.explore import analyse


def test_figures_with_a_point_per_row_draw_at_most_the_plot_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    # GIVEN 3 000 explored rows in 3 districts and a plot cap of 500 points
    rng = np.random.default_rng(0)
    surface = rng.uniform(15, 120, 3_000)
    df = pd.DataFrame(
        {
            "rent_eur": surface * 30 * np.exp(rng.normal(0, 0.2, 3_000)),
            "surface_m2": surface,
            "district": rng.choice(["75001", "75011", "75020"], 3_000),
        }
    )
    monkeypatch.setattr(reporting, "MAX_PLOT_POINTS", 500)
    drawn: dict[str, list[int]] = {"scatter": [], "hist": [], "boxplot": []}
    real = {name: getattr(Axes, name) for name in drawn}

    def recorder(name: str) -> Any:
        def draw(self: Axes, x: Any, *args: Any, **kwargs: Any) -> Any:
            if name == "boxplot":
                # A box plot draws its boxes, and each row as a point only when fliers are shown.
                drawn[name].append(sum(len(v) for v in x) if kwargs.get("showfliers", True) else 0)
            else:
                drawn[name].append(len(np.asarray(x)))
            return real[name](self, x, *args, **kwargs)

        return draw

    for name in drawn:
        monkeypatch.setattr(Axes, name, recorder(name))
    # WHEN the report's files are drawn
    exploration = analyse(df, run_id="plots")
    files = reporting.exploration_files(exploration)
    # THEN the scatter plot and the three histograms drew 500 points each, the box plot none per row
    assert "rent_per_m2_by_district.png" in files and exploration.summary["rows_usable"] == 3_000
    assert drawn["scatter"] == [500] and drawn["hist"] == [500, 500, 500] and drawn["boxplot"] == [0]
