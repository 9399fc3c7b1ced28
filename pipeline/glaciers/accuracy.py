"""Pixel accuracy of glacier maps against reference outlines: PA, UA, OA, F1, IoU (paper §2.4).

Everything reduces to a 2x2 confusion matrix, which adds up over pieces; so it is counted per
dask chunk and summed, and a region-wide map is never held in memory at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from scipy.ndimage import binary_dilation

from catalog.scenes import look_dates
from catalog.sun import SHADOW_REACH_M, overpass_sun, terrain_shadow
from pipeline.glaciers.deferred import Deferred
from pipeline.glaciers.extent import true_extent

DEBRIS_HALO_PX = 10
"""Debris-covered ice grown by this many pixels is the accuracy table's hard ``debris`` zone, so
both a missed debris tongue and ice mapped beyond it count there."""


def debris_zone(debris_fraction: np.ndarray, halo_px: int = DEBRIS_HALO_PX) -> np.ndarray:
    """(year, y, x) bool: the truth's debris-covered ice (``debris_fraction`` >= 0.5) grown by
    `halo_px` pixels (4-connected), year by year."""
    debris = np.asarray(debris_fraction) >= 0.5
    zone = np.zeros(debris.shape, bool)
    for d, z in zip(debris, zone):
        if (window := true_extent(d, max(halo_px, 0) + 1)) is not None:  # grown over the window of its debris alone
            z[window] = binary_dilation(d[window], iterations=halo_px) if halo_px >= 1 else d[window]
    return zone


SHADOW_HALO_PX = 5
"""Shadowed true ice grown by this many pixels (8-connected) is the ``shadowed_ice`` zone, as in the
held-out evaluation of the models (pipeline.training.world), so shadowed rock called glacier next to
it counts there too."""


def shadowed_ice_zone(glacier: np.ndarray, doy: np.ndarray, dem: np.ndarray, slope: np.ndarray, aspect: np.ndarray,
                      *, year: int, sensor: str, resolution: float, lon: float, lat: float,
                      halo_px: int = SHADOW_HALO_PX, season: tuple[str, str] | None = None) -> np.ndarray:
    """(y, x) bool for one year: true glacier pixels the sun did not reach in the look the composite
    took there (cast or self shadow, `catalog.sun.terrain_shadow`, at the sun of that look's day,
    `catalog.sun.overpass_sun` over lon/lat), grown by `halo_px`. ``doy`` 0 (no look) is never shadowed.
    `season`: the composite's, which dates a look's day (`catalog.scenes.look_dates`)."""
    glacier = np.asarray(glacier, bool)
    doy = np.asarray(doy)
    zone = np.zeros(glacier.shape, bool)
    # the rays reach SHADOW_REACH_M from the ice and the zone halo_px: beyond that window nothing
    # changes, and the window of a block's few glaciers is a fraction of the block (`extent`)
    window = true_extent(glacier & (doy > 0), math.ceil(SHADOW_REACH_M / resolution) + max(halo_px, 0) + 1)
    if window is None:
        return zone
    glacier, doy, dem, slope, aspect = (np.asarray(a)[window] for a in (glacier, doy, dem, slope, aspect))
    shaded_ice = np.zeros(glacier.shape, bool)
    days = np.unique(doy[glacier & (doy > 0)])
    if days.size:
        dates = look_dates(year, days, season)
        azimuth, elevation = overpass_sun(sensor, dates, lon, lat)
        for day, az, el in zip(days, azimuth, elevation):
            look = glacier & (doy == day)  # the rays are marched from these pixels only: the result is ice
            shaded_ice |= terrain_shadow(dem, slope, aspect, resolution, float(az), float(el), where=look)
    if halo_px >= 1 and shaded_ice.any():  # scipy dilates until nothing changes for iterations < 1
        shaded_ice = binary_dilation(shaded_ice, np.ones((3, 3), bool), iterations=halo_px)
    zone[window] = shaded_ice
    return zone


def confusion_counts(predicted: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """2x2 int64 counts [[TN, FP], [FN, TP]] (rows: truth, columns: prediction) over valid pixels."""
    # Counted with boolean ANDs and count_nonzero, not by gathering the valid pixels into int64 cell
    # codes for a bincount: ~20x faster on a 2,048 px tile, where the accuracy table counts four
    # maps in three zones of every tile-year.
    predicted = np.asarray(predicted, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if valid is None:
        ice, ground = truth, ~truth
    else:
        keep = np.asarray(valid, dtype=bool)
        ice, ground = truth & keep, ~truth & keep
    tp, fp = np.count_nonzero(predicted & ice), np.count_nonzero(predicted & ground)
    return np.array([[np.count_nonzero(ground) - fp, fp], [np.count_nonzero(ice) - tp, tp]], dtype=np.int64)


@dataclass(frozen=True)
class AccuracyMetrics:
    """Glacier-class accuracy; NaN where a ratio has nothing to divide (e.g. no glacier at all)."""

    PA: float  # producer's accuracy = recall: TP / (TP + FN)
    UA: float  # user's accuracy = precision: TP / (TP + FP)
    OA: float  # overall accuracy: (TP + TN) / n
    F1: float  # harmonic mean of PA and UA
    IoU: float  # TP / (TP + FP + FN)
    n_pixels: int

    @classmethod
    def from_confusion(cls, counts: np.ndarray) -> AccuracyMetrics:
        (tn, fp), (fn, tp) = np.asarray(counts, dtype=np.int64)
        n = int(tn + fp + fn + tp)

        def ratio(num: float, den: float) -> float:
            return float(num / den) if den else float("nan")

        return cls(
            PA=ratio(tp, tp + fn),
            UA=ratio(tp, tp + fp),
            OA=ratio(tp + tn, n),
            F1=ratio(2 * tp, 2 * tp + fp + fn),
            IoU=ratio(tp, tp + fp + fn),
            n_pixels=n,
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def accuracy_by_year(
    predicted: xr.DataArray,
    truth: xr.DataArray,
    valid: xr.DataArray | None = None,
    sensor: str | None = None,
) -> pd.DataFrame:
    """The `accuracy` table (sensor, year, PA, UA, OA, F1, IoU, n_pixels) from boolean masks.

    `predicted` has a `year` dim and, optionally, a `sensor` dim (otherwise pass `sensor`);
    `truth` and `valid` broadcast against it (a truth without `year` is used for every year).
    All confusion matrices are computed in one dask pass.
    """
    return accuracy_by_zone(predicted, truth, {"": valid}, sensor=sensor).drop(columns="zone")


def accuracy_by_zone(
    predicted: xr.DataArray,
    truth: xr.DataArray,
    zones: Mapping[str, xr.DataArray | None],
    sensor: str | None = None,
) -> pd.DataFrame:
    """`accuracy_by_year` with a ``zone`` column, for each zone's `valid` mask (None: every pixel).

    Every zone's confusion matrices come from one dask pass, so the maps and the truth are read
    once for all zones, not once per zone.
    """
    return accuracy_by_model({"": predicted}, truth, zones, sensor=sensor).drop(columns="model")


def accuracy_by_model(
    maps: Mapping[str, xr.DataArray],
    truth: xr.DataArray,
    zones: Mapping[str, xr.DataArray | None],
    sensor: str | None = None,
) -> pd.DataFrame:
    """`accuracy_by_zone` of several maps (model name -> boolean map; each scored for the years it
    has) with a ``model`` column: every model's, zone's and year's confusion matrix in one dask pass,
    so the truth is read once for all of them."""
    return deferred_accuracy_by_model(maps, truth, zones, sensor).compute()


def deferred_accuracy_by_model(
    maps: Mapping[str, xr.DataArray],
    truth: xr.DataArray,
    zones: Mapping[str, xr.DataArray | None],
    sensor: str | None = None,
) -> Deferred[pd.DataFrame]:
    """`accuracy_by_model`, deferred to share its read of the maps with the tables (`pipeline.glaciers.deferred`).

    One task per (sensor, year, chunk) counts every model in every zone there: a task per model,
    zone and chunk kept each chunk of the truth and of each zone until all of its models had been
    counted, and a region's worth of such slices waited on a worker (0.5-0.6 GB at x16)."""
    prepared = {}
    for model, predicted in maps.items():
        if "year" not in predicted.dims:
            raise ValueError(f"predicted needs a 'year' dim, has {predicted.dims}")
        if "sensor" not in predicted.dims:
            if sensor is None:
                raise ValueError("predicted has no 'sensor' dim; pass sensor='sentinel-2' (or the sensor's name)")
            predicted = predicted.expand_dims(sensor=[sensor])
        prepared[model] = predicted
    keys = [(model, zone, str(s), int(y)) for model, p in prepared.items() for zone in zones
            for s in p["sensor"].values for y in p["year"].values]
    looks = list(dict.fromkeys(key[2:] for key in keys))  # (sensor, year) in the keys' order
    lazy, where = [], {}  # where: key -> (index into lazy, row of its counts)
    for s, y in looks:
        here = [m for m, p in prepared.items() if s in p["sensor"].values.astype(str) and y in p["year"].values]
        planes = [prepared[m].sel(sensor=s, year=y) for m in here]
        t = _at(truth, s, y)
        valid = [_at(v, s, y) for v in zones.values() if v is not None]
        arrays = [_as_dask(a) for a in xr.broadcast(*planes, t, *valid)]
        reference = arrays[0]
        arrays = [reference] + [a.rechunk(reference.chunks) for a in arrays[1:]]
        per_chunk = da.map_blocks(
            _block_counts_together, *arrays, n_maps=len(here), every=tuple(v is None for v in zones.values()),
            new_axis=reference.ndim, chunks=(1,) * reference.ndim + (4 * len(here) * len(zones),), dtype=np.int64,
        )
        for i, m in enumerate(here):
            for j, zone in enumerate(zones):
                where[(m, zone, s, y)] = (len(lazy), i * len(zones) + j)
        lazy.append(per_chunk.sum(axis=tuple(range(reference.ndim))).reshape(-1, 2, 2))

    def finish(*counts: np.ndarray) -> pd.DataFrame:
        rows = []
        for m, z, s, y in keys:
            look, row = where[(m, z, s, y)]
            rows.append({"model": m, "zone": z, "sensor": s, "year": y, **AccuracyMetrics.from_confusion(counts[look][row]).as_dict()})
        return pd.DataFrame(rows, columns=["model", "zone", "sensor", "year", "PA", "UA", "OA", "F1", "IoU", "n_pixels"])

    return Deferred(tuple(lazy), finish)


def _block_counts_together(*blocks: np.ndarray, n_maps: int, every: tuple[bool, ...]) -> np.ndarray:
    """The confusion counts of each of the first `n_maps` blocks against the truth block after them,
    in each zone (`every`: the zone is every pixel, else its block follows, in order)."""
    maps, truth, valid = blocks[:n_maps], blocks[n_maps], iter(blocks[n_maps + 1:])
    masks = [None if all_pixels else next(valid) for all_pixels in every]
    counts = [confusion_counts(p, truth, v).ravel() for p in maps for v in masks]
    return np.concatenate(counts).reshape((1,) * truth.ndim + (-1,))


def _at(array: xr.DataArray, sensor: str, year: int) -> xr.DataArray:
    """`array` at one sensor and year, where it has those dims."""
    return array.sel({d: v for d, v in (("sensor", sensor), ("year", year)) if d in array.dims})


def _as_dask(array: xr.DataArray) -> da.Array:
    data = array.data
    return data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=-1)
