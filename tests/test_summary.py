"""The region summary: one definition for the run's printout and the report (numbers worked by hand)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.glaciers.summary import summary_table
from pipeline.outputs.report.sections import summary_section


def _tables() -> dict[str, pd.DataFrame]:
    total = pd.DataFrame({
        "sensor": ["landsat"] * 3 + ["sentinel-2"] * 3,
        "year": [2016, 2017, 2018] * 2,
        "area_km2": [9.0, 8.0, 7.0, 10.0, 9.5, 9.0],
        "area_err_km2": [0.9, 0.8, 0.7, 0.5, 0.4, 0.3],
        # Sentinel-2's first year is under cloud: 9.5 km² in 2017 is its first area, not 10.0
        "flag_unobserved": [False, False, False, True, False, False],
    })
    retreat = pd.DataFrame({
        "sensor": ["sentinel-2"] * 3,
        "glacier_id": [1, 2, 2],
        "method": ["main_axis", "main_axis", "box"],
        "year0": [2016, 2016, 2016],
        "year1": [2018, 2018, 2018],
        "rate_m_a": [10.0, 20.0, 99.0],
    })
    accuracy = pd.DataFrame({
        "sensor": ["sentinel-2"] * 4,
        "model": ["ndsi", "dunet", "dunet", "band_ratio"],
        "zone": ["all"] * 4,
        "year": [2018, 2017, 2018, 2018],
        "IoU": [0.1, 0.8, 0.9, 0.2],
        "OA": [0.5, 0.9, 1.0, 0.5],
    })
    return {"total_area": total, "retreat": retreat, "accuracy": accuracy}


def test_unobserved_years_are_not_first_areas_and_the_network_is_the_weights_architecture():
    summary = summary_table(_tables(), {"weights": {"sentinel-2": {"architecture": "dunet"}}}).set_index("sensor")
    assert list(summary.index) == ["sentinel-2", "landsat"]
    s2 = summary.loc["sentinel-2"]
    assert (s2.year0, s2.area0_km2, s2.area0_err_km2) == (2017, 9.5, 0.4)
    assert s2.years == "2016-2018 (without 2016: unobserved)" and s2.flagged_years == "2016"
    assert s2.mean_retreat_m_a == 15.0 and s2.n_glaciers == 2  # main axis only, the box row left out
    assert s2.model == "dunet" and np.isclose(s2.IoU, 0.85) and np.isclose(s2.OA, 0.95)  # baselines left out
    assert summary.loc["landsat"].area0_km2 == 9.0 and summary.loc["landsat"].n_failures == 0


def test_the_report_shows_the_summary_the_run_prints(tmp_path):
    tables = _tables()
    (tmp_path / "tables").mkdir()
    section = summary_section(tmp_path, tables, {})
    written = pd.read_csv(tmp_path / "tables" / f"{section['csv']}.csv")
    expected = summary_table(tables, {})
    assert list(written.sensor) == list(expected.sensor)
    assert np.allclose(written.area0_km2, expected.area0_km2) and list(written.years) == list(expected.years)
    assert [row[1].text for row in section["table"].rows] == list(expected.years)  # the Years column


def test_failures_count_glaciers_not_rows():
    """A glacier with three fronts under cloud has three failures rows: one glacier (the CSV and the report agree)."""
    failures = pd.DataFrame({"glacier_id": [7, 7, 7, 9], "sensor": ["sentinel-2"] * 3 + ["landsat"],
                             "task": "terminus", "reason": "front of 2020 not observed"})
    summary = summary_table({**_tables(), "failures": failures}).set_index("sensor")
    assert summary.loc["sentinel-2", "n_failures"] == 1 and summary.loc["landsat", "n_failures"] == 1
