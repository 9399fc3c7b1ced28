"""One cloud-free image per year: per pixel, the clear observation with the least snow.

The rule (documented because every glacier outline depends on it): over a year's clear
observations of a pixel, take the whole spectrum of the one with the lowest green
reflectance (`key_band`); ties go to the later date. Late snow, firn patches and residual
thin cloud are all brighter in the visible than the same ground at the end of the
ablation season, so the darkest clear visible observation is the least-snow, latest-melt
look at the surface - the one glacier inventories ask for. Taking one observation whole
(rather than per-band percentiles) keeps band ratios such as NDSI physically consistent.

Laziness: each year is one task per spatial chunk that sees all of that year's observations
and bands of the chunk (time and band are merged into one dask chunk, space is not) and
picks per pixel in numpy. Memory per task is (observations x bands x chunk²), whatever the
size of the region, and nothing is read until the caller computes or stores the result.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import xarray as xr

DEFAULT_KEY_BANDS = ("B03", "green")


def _key_band(cube: xr.DataArray, key_band: str | None) -> str:
    bands = [str(b) for b in cube.band.values]
    if key_band is not None:
        if key_band not in bands:
            raise ValueError(f"key_band {key_band!r} is not a band of the cube ({bands})")
        return key_band
    for name in DEFAULT_KEY_BANDS:
        if name in bands:
            return name
    raise ValueError(f"the cube has no green band ({bands}): pass key_band= naming the band to rank by")


def _check_aligned(cube: xr.DataArray, clear: xr.DataArray) -> None:
    if cube.sizes["time"] != clear.sizes["time"]:
        raise ValueError(
            f"cube has {cube.sizes['time']} observations but clear has {clear.sizes['time']}: build both "
            "from the same items (reflectance_cube and quality_cube with the same on_unreadable)"
        )
    if "id" in cube.coords and "id" in clear.coords and not np.array_equal(cube.id.values, clear.id.values):
        raise ValueError("cube and clear hold different scenes (their `id` coords differ): build both from the same items")


def _in_season(times: pd.DatetimeIndex, season: tuple[str, str] | None) -> np.ndarray:
    if season is None:
        return np.ones(len(times), bool)
    md = times.strftime("%m-%d")
    return np.asarray((md >= season[0]) & (md <= season[1]))


def _best_observation(
    refl: np.ndarray, clear: np.ndarray, key_index: int, doys: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy kernel: refl (..., time, band), clear (..., time) -> best (..., band), count (...), doy (...).

    Lowest key-band value among the valid observations; ties go to the later one (argmin over
    the time-reversed stack finds the last minimum). `doys` (time,) is each observation's day
    of year; the returned doy is the chosen observation's, 0 where there is none.
    """
    valid = clear & np.isfinite(refl).all(axis=-1)
    key = np.where(valid, refl[..., key_index], np.inf)
    last = key.shape[-1] - 1 - np.argmin(key[..., ::-1], axis=-1)
    best = np.take_along_axis(refl, last[..., None, None], axis=-2)[..., 0, :]
    seen = valid.any(axis=-1)
    best[~seen] = np.nan
    doys = np.zeros(key.shape[-1], np.uint16) if doys is None else np.asarray(doys, np.uint16)
    doy = np.where(seen, doys[last], 0).astype(np.uint16)
    return best.astype(np.float32, copy=False), valid.sum(axis=-1).astype(np.uint16), doy


def yearly_composite(
    cube: xr.DataArray,
    clear: xr.DataArray,
    season: tuple[str, str] | None = None,
    key_band: str | None = None,
) -> xr.Dataset:
    """Yearly composite `reflectance` (year, band, y, x) float32, `clear_count` and `doy` (year, y, x) uint16.

    `cube` is a reflectance cube (time, band, y, x); `clear` is (time, y, x) boolean, True
    where the quality layer says the observation is usable (catalog.masks.clear_mask).
    An observation also needs every band finite. `season` ("MM-DD", "MM-DD") keeps only
    observations inside it (inclusive); default: all. A pixel with no clear observation in a
    year is NaN with clear_count 0. `doy` is the day of year (1-366) of the observation each
    pixel was taken from, 0 where there is none: what was observed, and when, travels beside
    the reflectance so that "not observed" is never read as "not glacier" (DESIGN.md, Observed
    vs. glacier) and change rates can divide by the real time between observations. Lazy if `cube` is.
    """
    _check_aligned(cube, clear)
    kb = _key_band(cube, key_band)
    cube = cube.reset_coords(drop=True)
    clear = clear.reset_coords(drop=True).astype(bool)
    times = pd.DatetimeIndex(cube.time.values)
    in_season = _in_season(times, season)
    years = sorted({t.year for t, s in zip(times, in_season) if s})
    if not years:
        raise ValueError(f"no observation of the cube falls in season {season}: widen the season")
    key_index = [str(b) for b in cube.band.values].index(kb)
    refl, counts, doys = [], [], []
    for year in years:
        steps = [i for i, (t, s) in enumerate(zip(times, in_season)) if s and t.year == year]
        best, count, doy = xr.apply_ufunc(
            _best_observation,
            cube.isel(time=steps).chunk({"time": -1, "band": -1}),
            clear.isel(time=steps).chunk({"time": -1}),
            kwargs={"key_index": key_index, "doys": times[steps].dayofyear.to_numpy().astype(np.uint16)},
            input_core_dims=[["time", "band"], ["time"]],
            output_core_dims=[["band"], [], []],
            dask="parallelized",
            output_dtypes=[np.float32, np.uint16, np.uint16],
        )
        refl.append(best)
        counts.append(count)
        doys.append(doy)
    year_index = pd.Index(years, name="year")
    out = xr.Dataset(
        {
            "reflectance": xr.concat(refl, dim=year_index).transpose("year", "band", "y", "x"),
            "clear_count": xr.concat(counts, dim=year_index).transpose("year", "y", "x"),
            "doy": xr.concat(doys, dim=year_index).transpose("year", "y", "x"),
        },
        attrs={
            "composite_rule": f"per pixel, the clear observation with the lowest {kb} reflectance; ties to the later date",
            "season": list(season) if season else "all",
        },
    )
    out["reflectance"].attrs = {k: v for k, v in cube.attrs.items() if k != "skipped_scenes"}
    out["clear_count"].attrs = {"long_name": "clear observations per pixel and year", "units": "1"}
    out["doy"].attrs = {"long_name": "day of year of the observation the pixel comes from (0 = none)", "units": "1"}
    return out
