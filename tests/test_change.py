"""Change formulas against the reference paper's worked figures and hand-worked numbers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.glaciers.change import (
    area_change,
    area_change_uncertainty_km2,
    area_trend,
    area_uncertainty_km2,
    ols_trend,
    terminus_change_uncertainty_m_a,
    theil_sen_trend,
)


def test_area_uncertainty_is_perimeter_times_half_pixel():
    # 3120 km of outline at 10 m pixels: 3120 km x 0.005 km = 15.60 km² (the paper's 2016 error)
    assert area_uncertainty_km2(3120.0, 10.0) == pytest.approx(15.60)
    # 30 m Landsat pixels triple it
    assert area_uncertainty_km2([1.0, 2.0], 30.0) == pytest.approx([0.015, 0.030])


def test_paper_area_change_uncertainty_is_22_72_km2():
    assert area_change_uncertainty_km2(15.60, 16.52) == pytest.approx(22.72, abs=0.005)


def test_paper_annual_area_change_is_minus_0_75_pct_per_year_plus_minus_0_69():
    ch = area_change(546.86, 15.60, 522.17, 16.52, years=6)
    assert ch.change_km2 == pytest.approx(-24.69)
    assert ch.change_err_km2 == pytest.approx(22.72, abs=0.005)
    assert np.round(ch.rate_pct_a, 2) == -0.75
    assert np.round(ch.rate_err_pct_a, 2) == 0.69


def test_area_change_is_vectorised_and_rejects_zero_years():
    ch = area_change([10.0, 4.0], [0.1, 0.1], [9.0, 5.0], [0.1, 0.1], [2.0, 4.0])
    np.testing.assert_allclose(ch.rate_pct_a, [-5.0, 6.25])
    with pytest.raises(ValueError, match="years"):
        area_change(10.0, 0.1, 9.0, 0.1, 0.0)


def test_terminus_uncertainty_as_printed_and_variant_for_10_m_pixels_over_6_years():
    assert terminus_change_uncertainty_m_a(10, 10, 6, "as_printed") == pytest.approx(1.1785, abs=1e-4)
    assert terminus_change_uncertainty_m_a(10, 10, 6, "variant") == pytest.approx(2.357, abs=1e-3)
    # the variant is the one that reproduces the paper's published ±2.36 m/a
    assert np.round(terminus_change_uncertainty_m_a(10, 10, 6, "variant"), 2) == 2.36
    with pytest.raises(ValueError, match="formula"):
        terminus_change_uncertainty_m_a(10, 10, 6, "diagonal")  # type: ignore[arg-type]


# Hand-worked series: x = 0..4, y = 0, 1, 2, 3, 5 (one jump at the end).
# OLS: Sxx = 10, Sxy = 12 -> slope 1.2, intercept -0.2; SSE = 0.4, s² = 0.4/3,
# se = sqrt(s²/Sxx) = 0.11547; t(0.975, 3) = 3.18245 -> CI 1.2 ± 0.36748.
# Theil–Sen: the 10 pairwise slopes are 1 (x6), 1.25, 4/3, 1.5, 2 -> median 1.0.
X = np.arange(5) + 2016
Y = np.array([0.0, 1.0, 2.0, 3.0, 5.0])


def test_ols_trend_matches_hand_worked_slope_and_t_interval():
    tr = ols_trend(X, Y)
    assert tr.slope == pytest.approx(1.2)
    assert tr.slope_lo == pytest.approx(1.2 - 0.36748, abs=1e-4)
    assert tr.slope_hi == pytest.approx(1.2 + 0.36748, abs=1e-4)
    assert tr.n == 5


def test_theil_sen_trend_ignores_the_last_year_jump():
    tr = theil_sen_trend(X, Y)
    assert tr.slope == pytest.approx(1.0)
    assert tr.slope_lo <= 1.0 <= tr.slope_hi
    assert tr.slope_hi <= 2.0  # bounded by the pairwise slopes


def test_area_trend_on_a_shrinking_glacier_is_negative_and_drops_nan_years():
    years = np.arange(2016, 2023)
    areas = 10.0 - 0.1 * (years - 2016)
    areas[3] = np.nan  # a cloudy year
    trends = area_trend(years, areas)
    assert trends["ols"].slope == pytest.approx(-0.1)
    assert trends["theil_sen"].slope == pytest.approx(-0.1)
    assert trends["ols"].n == 6
    with pytest.raises(ValueError, match="at least 3"):
        ols_trend([2016, 2017], [1.0, 2.0])
