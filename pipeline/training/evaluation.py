"""Mapping accuracy of predictors on held-out years: everywhere, and on debris-covered termini.

Beside the predictors, persistence (the previous year's true outline reused) is scored wherever
the truth has the previous year: a network that does not beat it has learnt the glaciers, not ice.

Every predictor (D-UNet, U-Net, band ratio, NDSI) goes through the same Predictor interface
and the same confusion matrix accumulated over dask chunks (pipeline.glaciers.accuracy). The debris
zone is the truth's debris-covered ice grown by `debris_halo_px` pixels, so both missed debris
and debris-coloured rock called glacier next to it count - the hard case for band ratios.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.glaciers.accuracy import DEBRIS_HALO_PX, accuracy_by_year, debris_zone
from pipeline.model.predictor import Predictor
from pipeline.training.samples import TERRAIN_CHANNELS


def predict_years(predictor: Predictor, cube: xr.Dataset, years: Sequence[int]) -> xr.DataArray:
    """Probability (year, y, x) of a predictor over whole computed composites."""
    terrain = {name: cube[name].values for name in TERRAIN_CHANNELS}
    planes = [predictor.predict(cube.reflectance.sel(year=y).values, terrain) for y in years]
    return xr.DataArray(np.stack(planes), dims=("year", "y", "x"), coords={"year": list(years)})


def accuracy_table(
    predictors: Mapping[str, Predictor],
    cube: xr.Dataset,
    truth: xr.Dataset,
    years: Sequence[int],
    sensor: str,
    debris_halo_px: int = DEBRIS_HALO_PX,
    chunks: int = 512,
    within: np.ndarray | None = None,
) -> pd.DataFrame:
    """Rows (model, zone, sensor, year, PA, UA, OA, F1, IoU, n_pixels); zone 'all' or 'debris'.

    `within` (y, x bool): score only there, e.g. the zones of glaciers held out of training."""
    # Truth and cube share the grid; their coordinate floats need not agree to the last bit.
    truth = truth.drop_vars(["y", "x"], errors="ignore")
    glacier = (truth.glacier_fraction.sel(year=list(years)) >= 0.5).chunk({"year": 1, "y": chunks, "x": chunks})
    observed = cube.reflectance.sel(year=list(years)).notnull().all("band").drop_vars(["y", "x"], errors="ignore")
    if within is not None:
        observed = observed & xr.DataArray(np.asarray(within, bool), dims=("y", "x"))
    zone = debris_zone(truth.debris_fraction.sel(year=list(years)).values, debris_halo_px)
    zones = {"all": observed, "debris": observed & xr.DataArray(zone, dims=("year", "y", "x"), coords={"year": list(years)})}
    rows = []
    maps = {name: predict_years(predictor, cube, years) >= 0.5 for name, predictor in predictors.items()}
    previous = [y - 1 for y in years]
    if set(previous) <= set(truth.year.values.tolist()):  # persistence: last year's true outline, as is
        last = truth.glacier_fraction.sel(year=previous) >= 0.5
        maps["persistence"] = last.assign_coords(year=list(years))
    for name, mapped in maps.items():
        predicted = mapped.chunk({"year": 1, "y": chunks, "x": chunks})
        for zone_name, valid in zones.items():
            table = accuracy_by_year(predicted, glacier, valid.chunk({"year": 1, "y": chunks, "x": chunks}), sensor=sensor)
            rows.append(table.assign(model=name, zone=zone_name))
    cols = ["model", "zone", "sensor", "year", "PA", "UA", "OA", "F1", "IoU", "n_pixels"]
    return pd.concat(rows, ignore_index=True)[cols]
