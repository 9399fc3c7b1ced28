"""Never guess silently: the model's mask against NDSI > 0.4 and red/SWIR > 2, per glacier-year and region-wide."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from rich.console import Console

from catalog.grid import TargetGrid
from pipeline.glaciers.region_tables import index_agreement
from pipeline.glaciers.statistics import glacier_statistics

ROOT = Path(__file__).resolve().parents[1]
YEARS = [2020, 2021, 2022]
PX_KM2 = 1e-4  # 10 m pixels

# 6 rows x 8 cols. Glacier 1: rows 1-4, cols 0-3 (16 px); glacier 2: rows 1-4, cols 5-7 (12 px).
GID = np.zeros((6, 8), np.int32)
GID[1:5, 0:4] = 1
GID[1:5, 5:8] = 2
G1, G2 = GID == 1, GID == 2


def _maps():
    """Probability (0-255), observed (0 = not observed) and index bits (255 = not read) per year, worked below."""
    prob = np.full((3, 6, 8), 20, np.uint8)
    observed = np.full((3, 6, 8), 3, np.uint8)
    bits = np.zeros((3, 6, 8), np.uint8)
    # 2020: model and both indices map both glaciers exactly -> disagreement 0; one pixel of
    # glacier 2 was never read (255): left out of the comparison, not counted as a disagreement.
    prob[0][GID > 0] = 200
    bits[0][GID > 0] = 3
    bits[0, 1, 5] = 255
    # 2021, glacier 1: the model maps all 16 px; row 1 (4 px) is unobserved (cloud), so 12 px are
    # compared: NDSI maps all 12 (0 % disagreement), the ratio only rows 2-3 (8 px: 4/12 = 1/3).
    # The model sides with NDSI: index_disagreement = min(0, 1/3) = 0, no flag.
    prob[1][G1] = 200
    observed[1, 1, 0:4] = 0
    bits[1][G1] = 1
    bits[1, 2:4, 0:4] = 3
    # 2021, glacier 2: the model maps nothing where both indices map all 12 px -> 12/12 = 1, flagged.
    bits[1][G2] = 3
    # 2022, glacier 1: the model maps 16 px, both indices only rows 3-4 cols 0-2 (6 px): 10/16.
    prob[2][G1] = 200
    bits[2, 3:5, 0:3] = 3
    # 2022, glacier 2: model and indices both map nothing (no ice, no disagreement): 0.
    return prob, observed, bits


def _da(values, years=YEARS):
    dims = ("year", "y", "x") if values.ndim == 3 else ("y", "x")
    coords = {"y": 55.0 - 10.0 * np.arange(6), "x": 5.0 + 10.0 * np.arange(8)}
    if values.ndim == 3:
        coords["year"] = years
    return xr.DataArray(values, dims=dims, coords=coords)


def _areas(limit=0.5, **kw):
    prob, observed, bits = _maps()
    dem, aspect = np.full((6, 8), 4000.0), np.full((6, 8), 90.0)
    tables = glacier_statistics(_da(prob), _da(GID), _da(dem), _da(aspect), sensor="S2", observed=_da(observed),
                                indices=_da(bits), max_index_disagreement=limit, **kw)
    return tables["areas"].set_index(["glacier_id", "year"])


def test_model_and_indices_per_glacier_year_by_hand():
    a = _areas()
    # 2020: all agree; glacier 2 compares 11 of its 12 px (one not read)
    assert a.loc[(1, 2020), ["index_model_km2", "ndsi_km2", "ratio_km2"]].tolist() == pytest.approx([16 * PX_KM2] * 3)
    assert a.loc[(2, 2020), ["index_model_km2", "ndsi_km2", "ratio_km2"]].tolist() == pytest.approx([11 * PX_KM2] * 3)
    assert a.loc[(1, 2020), "index_disagreement"] == 0 and a.loc[(2, 2020), "index_disagreement"] == 0
    # 2021 glacier 1: 12 px compared (the cloudy row left out); the area itself still counts 16 px
    g1 = a.loc[(1, 2021)]
    assert g1.area_km2 == pytest.approx(16 * PX_KM2)
    assert (g1.index_model_km2, g1.ndsi_km2, g1.ratio_km2) == pytest.approx((12 * PX_KM2, 12 * PX_KM2, 8 * PX_KM2))
    assert (g1.ndsi_disagreement, g1.ratio_disagreement, g1.index_disagreement) == pytest.approx((0.0, 1 / 3, 0.0))
    assert not g1.flag_index_disagreement
    # 2021 glacier 2: the model maps nothing where both indices map ice
    g2 = a.loc[(2, 2021)]
    assert (g2.index_model_km2, g2.ndsi_km2, g2.ratio_km2) == pytest.approx((0.0, 12 * PX_KM2, 12 * PX_KM2))
    assert g2.index_disagreement == 1.0 and g2.flag_index_disagreement
    # 2022: glacier 1 maps 10 px more than both indices (10/16); glacier 2: nothing anywhere, agreement
    assert a.loc[(1, 2022), "index_disagreement"] == pytest.approx(10 / 16) and a.loc[(1, 2022), "flag_index_disagreement"]
    assert a.loc[(2, 2022), "index_disagreement"] == 0 and not a.loc[(2, 2022), "flag_index_disagreement"]
    assert a["flag_index_disagreement"].sum() == 2


def test_the_threshold_decides_the_flag():
    a = _areas(limit=0.7)  # 10/16 = 0.625 is within it now; 1.0 still is not
    assert not a.loc[(1, 2022), "flag_index_disagreement"] and a.loc[(2, 2021), "flag_index_disagreement"]
    assert _areas(limit=0.0)["flag_index_disagreement"].sum() == 2  # glacier 1, 2021 sides with NDSI: its min is 0
    with pytest.raises(ValueError, match="max_index_disagreement"):
        _areas(limit=1.5)


def test_chunked_equals_unchunked():
    prob, observed, bits = _maps()
    dem, aspect = np.full((6, 8), 4000.0), np.full((6, 8), 90.0)
    chunked = glacier_statistics(_da(prob).chunk({"year": 1, "y": 4, "x": 3}), _da(GID), _da(dem), _da(aspect), sensor="S2",
                                 observed=_da(observed), indices=_da(bits))["areas"]
    pd.testing.assert_frame_equal(chunked.set_index(["glacier_id", "year"]), _areas())


def test_without_the_index_layer_or_with_it_never_read_nothing_is_compared():
    prob, observed, _ = _maps()
    dem, aspect = np.full((6, 8), 4000.0), np.full((6, 8), 90.0)
    unread = np.full(prob.shape, 255, np.uint8)  # a store's years from before the layer existed
    for indices in (None, _da(unread)):
        a = glacier_statistics(_da(prob), _da(GID), _da(dem), _da(aspect), sensor="S2", observed=_da(observed),
                               indices=indices)["areas"]
        assert a[["index_model_km2", "ndsi_km2", "ratio_km2", "index_disagreement"]].isna().all().all()
        assert not a["flag_index_disagreement"].any()
    assert index_agreement(a).empty  # nothing compared: nothing judged region-wide


def test_the_store_layer_reaches_the_statistics(tmp_path):
    """Written by the unit task beside the probability, read back into the per-glacier comparison."""
    from pipeline.store import RegionStore

    grid = TargetGrid(32644, 10.0, (0.0, 0.0, 80.0, 60.0))  # 6 x 8 px
    store = RegionStore.create(str(tmp_path / "s.zarr"), {"sentinel-2": grid}, weights_sha256="a" * 64, chunk_size=4)
    prob, observed, bits = _maps()
    store.write_static("sentinel-2", "glacier_id", GID)
    for name in ("dem", "slope", "aspect"):
        store.write_static("sentinel-2", name, np.full((6, 8), 45.0, np.float32))
    for t, year in enumerate(YEARS):
        store.add_year("sentinel-2", year, scene_ids=["x"], config_hash="c")
        store.write_probability("sentinel-2", year, prob[t], observed=observed[t], indices=bits[t], scheduler="synchronous")
    ds = store.open_dataset("sentinel-2")
    a = glacier_statistics(ds.probability, ds.glacier_id, ds.dem, ds.aspect, sensor="S2", observed=ds.observed,
                           indices=ds.indices)["areas"].set_index(["glacier_id", "year"])
    pd.testing.assert_series_equal(a["index_disagreement"], _areas()["index_disagreement"])


# -- region-wide --------------------------------------------------------------------------------


def _region(model, ndsi, ratio, sensor="sentinel-2"):
    return pd.DataFrame({"glacier_id": [1, 2], "sensor": sensor, "year": 2021,
                         "index_model_km2": [model / 2] * 2, "ndsi_km2": [ndsi / 2] * 2, "ratio_km2": [ratio / 2] * 2,
                         "flag_index_disagreement": [True, False]})


@pytest.mark.parametrize(
    ("model", "ndsi", "ratio", "extreme"),
    [
        (0.05, 1.0, 0.8, True),  # maps almost nothing where both indices map ice (the real-scene failure)
        (2.0, 0.1, 0.15, True),  # the reverse: > 10x both
        (0.5, 1.0, 0.8, False),  # disagreeing, not extreme
        (0.05, 1.0, 0.3, False),  # below 1/10 of NDSI but not of the ratio: the indices disagree too
        (0.0, 0.02, 0.02, False),  # too little ice anywhere to judge
    ],
)
def test_region_wide_extreme_disagreement(model, ndsi, ratio, extreme):
    row = index_agreement(_region(model, ndsi, ratio)).iloc[0]
    assert row.extreme == extreme
    assert (row.index_model_km2, row.ndsi_km2, row.ratio_km2) == pytest.approx((model, ndsi, ratio))
    assert row.model_to_ndsi == pytest.approx(model / ndsi) and row.n_compared == 2 and row.n_flagged == 1


def _inputs(sensor="sentinel-2"):
    from pipeline.inference.region import read_card

    weights = ROOT / "pipeline" / "weights" / f"{sensor}.safetensors"
    return SimpleNamespace(sensors={sensor: SimpleNamespace(weights=weights, card=read_card(weights, sensor))}), weights


def test_an_extreme_run_stops_naming_the_weights_and_their_domain_unless_the_user_opts_in():
    from pipeline.run import IndexDisagreementError, RunError, check_index_agreement

    inputs, weights = _inputs()
    domain = inputs.sensors["sentinel-2"].card.domain.describe()
    log = io.StringIO()
    with pytest.raises(IndexDisagreementError) as err:
        check_index_agreement(_region(0.01, 1.2, 1.0), inputs, False, Console(file=log))
    message = str(err.value)
    assert isinstance(err.value, RunError) and "\n" not in message
    assert str(weights) in message and domain in message and "allow_index_disagreement: true" in message
    assert "0.010 km2" in message and "1.200 km2" in message
    # opted in: the run goes on, saying the same as a warning
    agreement = check_index_agreement(_region(0.01, 1.2, 1.0), inputs, True, Console(file=log, width=400))
    assert bool(agreement.extreme.iloc[0]) and "warning" in log.getvalue() and str(weights) in log.getvalue()
    # agreeing maps pass silently
    quiet = io.StringIO()
    assert not check_index_agreement(_region(1.0, 1.2, 1.0), inputs, False, Console(file=quiet)).extreme.any()
    assert quiet.getvalue() == ""


def test_config_defaults_and_summary_names_the_flagged_glaciers():
    from pipeline.config import load_config
    from pipeline.glaciers.raster_schema import DEFAULT_MAX_INDEX_DISAGREEMENT
    from pipeline.glaciers.summary import summary_table

    analysis = load_config(None).analysis
    # 0.2, chosen on held-out world scenes (docs/tables.md, flag_index_disagreement); the statistics' own default agrees
    assert analysis.max_index_disagreement == 0.2 == DEFAULT_MAX_INDEX_DISAGREEMENT and analysis.allow_index_disagreement is False
    areas = _areas().reset_index().assign(sensor="sentinel-2")
    total = pd.DataFrame({"sensor": "sentinel-2", "year": YEARS, "area_km2": 1.0, "area_err_km2": 0.1,
                          "flag_unobserved": False})
    row = summary_table({"total_area": total, "areas": areas}).iloc[0]
    assert row.n_index_flagged == 2 and row.index_flagged == "1 (2022), 2 (2021)"
    named = areas.assign(inventory_id=areas.glacier_id.map({1: "G013332E47020N", 2: "G013340E47030N"}))
    assert summary_table({"total_area": total, "areas": named}).iloc[0].index_flagged == "G013332E47020N (2022), G013340E47030N (2021)"


def test_the_report_lists_the_flagged_glaciers_and_the_uncertainty_terms(tmp_path):
    from pipeline.glaciers.region_tables import region_total
    from pipeline.outputs.report import uncertainty_html

    areas = _areas().reset_index().assign(sensor="sentinel-2")
    (tmp_path / "tables").mkdir()
    html = uncertainty_html(tmp_path, {"areas": areas, "total_area": region_total(areas)})
    assert "± classification (km²)" in html and "classification term" in html
    assert "Glacier-years where the model disagrees with both indices" in html
    assert "<td>sentinel-2</td><td class=\"num\">2</td><td class=\"num\">2021</td>" in html
    assert "2 of 6" in html  # flagged of compared, region-wide
    flagged = pd.read_csv(tmp_path / "tables" / "index_disagreement.csv")
    assert sorted(zip(flagged.glacier_id, flagged.year)) == [(1, 2022), (2, 2021)]


def test_the_model_is_compared_with_the_indices_inside_the_inventory_outline_not_its_buffer():
    """A glacier mapped exactly, in a snowy year: snow lies on the 3 px buffer of its zone, which both indices
    call ice and the network rightly does not. Compared over the zone it read index_disagreement 0.61 (flagged);
    over the outline (`indices_over_outlines`, as a run compares) the map and the indices agree."""
    from pipeline.glaciers.accumulation import indices_over_outlines
    from pipeline.store import INDICES_NOT_READ
    from pipeline.store.encoding import NDSI_BIT, RATIO_BIT

    gid = np.zeros((20, 20), np.int32)
    gid[2:18, 2:18] = 1  # the zone: the outline (rows and columns 5-14) grown by 3 px
    outline = np.zeros_like(gid, bool)
    outline[5:15, 5:15] = True
    coords = {"y": 195.0 - 10.0 * np.arange(20), "x": 5.0 + 10.0 * np.arange(20)}
    years = {"year": [2020]}

    def layer(values):
        return xr.DataArray(values, dims=("year", "y", "x") if values.ndim == 3 else ("y", "x"),
                            coords={**(years if values.ndim == 3 else {}), **coords})

    glacier_id = layer(gid)
    snow = layer(np.full((1, 20, 20), NDSI_BIT | RATIO_BIT, np.uint8))  # snow and ice everywhere
    inside = indices_over_outlines(snow.chunk({"y": 10, "x": 10}), glacier_id.chunk({"y": 10, "x": 10}), 3.0).values[0]
    assert (inside[outline] == NDSI_BIT | RATIO_BIT).all() and (inside[~outline] == INDICES_NOT_READ).all()

    def disagreement(index_layer):
        tables = glacier_statistics(layer(np.where(outline, 200, 0).astype(np.uint8)[None]), glacier_id,
                                    layer(np.full((20, 20), 4000.0)), layer(np.full((20, 20), 90.0)), sensor="S2",
                                    indices=index_layer)
        return tables["areas"].set_index("glacier_id").loc[1, "index_disagreement"]

    assert disagreement(snow) == pytest.approx(1 - 100 / 256)  # the buffer's 156 px of snow
    assert disagreement(layer(inside[None])) == 0.0
