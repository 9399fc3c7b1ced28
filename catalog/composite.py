"""One cloud-free image per year: per pixel, the clear, sunlit observation with the least snow.

The rule (documented because every glacier outline depends on it; measured against the
alternatives in docs/composite.md): over a year's clear observations of a pixel, drop those in
shadow, then take the whole spectrum of the one with the lowest green reflectance
(`key_band`); ties go to the later date. Late snow, firn patches and residual thin cloud are
all brighter in the visible than the same ground at the end of the ablation season, so the
darkest clear visible observation is the least-snow, latest-melt look at the surface - the
one glacier inventories ask for. Two things are darker without being less snowy, and the rule
takes both out. Light: the looks are weeks apart and the sun drops through the season, so
given the terrain each look is compared on its reflectance divided by its direct illumination
on the slope (catalog.sun), and a look whose slope is turned from the sun is shadow. Shadow:
an observation darker than SHADOW_FACTOR times the year's brightest clear look at that pixel
in *every* band is in (cast) shadow: shadow scales the whole spectrum down, while snow or its
absence changes its shape (snow is brighter in the visible but darker in the SWIR than rock or
ice), so snow never makes the snow-free look "shadowed". Where every clear look is shadowed,
the darkest of them is taken. Taking one observation whole (rather than per-band percentiles)
keeps band ratios such as NDSI physically consistent, and its day of year travels with it (`doy`).

Laziness: each year is one task per spatial chunk that sees all of that year's observations
and bands of the chunk (time and band are merged into one dask chunk, space is not) and
picks per pixel in one pass (numba, or numpy where numba is missing; the same result).
Memory per task is (observations x bands x chunk²), whatever the size of the region, and
nothing is read until the caller computes or stores the result.
"""

from __future__ import annotations

import functools
import itertools
import operator

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from catalog.cube import reflectance_values
from catalog.scenes import season_years
from catalog.sun import LIGHT_FLOOR, illumination_terms, light_from_terms, sun_coefficients

DEFAULT_KEY_BANDS = ("B03", "green")
RULES = ("sunlit-darkest", "darkest")
"""`sunlit-darkest`: the rule above; `darkest`: the lowest key band among all clear looks, shadow
included (what the shipped weights were trained on; kept to reproduce them)."""
SHADOW_FACTOR = 0.5
"""An observation darker than this times the year's brightest clear look in every band is in
shadow. Sunlit ice against sunlit snow stays above ~0.55 in the blue; terrain shadow (skylight
only) is below ~0.3 (measured in docs/composite.md: 0.5 removes most shadowed picks without
trading ice for snow)."""
SELF_SHADOW = 0.05
"""Illumination relative to flat ground (catalog.sun.relative_illumination) at or below which a
look is in its slope's own shadow: the sun grazes or misses the slope, whatever its darkness."""


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


def _select_numpy(refl, clear, key_index, doys, sunlit, factor, best, count, doy, terms=None, coef=None) -> None:
    """The selection in numpy, vectorised over pixels and looping over the (few) observations."""
    n_time, n_band = refl.shape[:2]
    valid = clear.copy()
    for t in range(n_time):
        for b in range(n_band):
            valid[t] &= np.isfinite(refl[t, b])
    count[...] = valid.sum(axis=0, dtype=np.uint16)
    use = valid
    cor = refl  # what the looks are compared on: reflectance, or reflectance / illumination
    light = None if terms is None else light_from_terms(terms, coef)
    if light is not None:
        cor = refl * (np.float32(1.0) / np.maximum(light, np.float32(LIGHT_FLOOR)))[:, None]
    if sunlit:
        vmax = np.full(refl.shape[1:], -np.inf, np.float32)
        for t in range(n_time):
            np.maximum(vmax, cor[t], out=vmax, where=valid[t])
        limit = factor * vmax
        lit = valid.copy()
        for t in range(n_time):
            dark = valid[t].copy()
            for b in range(n_band):
                dark &= cor[t, b] < limit[b]
            if light is not None:
                dark |= light[t] <= np.float32(SELF_SHADOW)
            lit[t] &= ~dark
        use = np.where(lit.any(axis=0), lit, valid)
    low = np.full(refl.shape[2:], np.inf, np.float32)
    pick = np.full(refl.shape[2:], -1, np.int16)
    for t in range(n_time):  # `<=`: ties go to the later observation
        better = use[t] & (cor[t, key_index] <= low)
        low[better] = cor[t, key_index][better]
        pick[better] = t
    seen = pick >= 0
    safe = np.where(seen, pick, 0).astype(np.intp)
    best[...] = np.take_along_axis(refl, safe[None, None], axis=0)[0]
    best[:, ~seen] = np.nan
    doy[...] = np.where(seen, doys[safe], 0)


def _select_kernel():
    """The selection compiled with numba (one pass per pixel, no temporaries), else None."""
    try:
        import numba
    except ImportError:  # pragma: no cover - xarray-spatial brings numba, but the numpy path stays correct
        return None

    @numba.njit(nogil=True, cache=True)
    def select(refl, clear, key_index, doys, sunlit, factor, best, count, doy, convert, scale, offset, correct, terms, coef, floor,
               self_shadow):  # pragma: no cover - compiled
        # Row by row, so that every inner loop runs along contiguous memory (one row of one band),
        # and without branches in the inner loops, so that LLVM vectorises them. `convert`: `refl`
        # holds DNs, turned into reflectance one row at a time (DN * scale + offset in float32, as
        # catalog.cube.reflectance_values does; NaN where the DN is 0). `correct`: the looks are
        # compared on reflectance x (1 / max(light, floor)) (`cor`), light = terms[0] + (coef[t, 0] *
        # terms[1] + coef[t, 1] * terms[2]) (catalog.sun.light_from_terms, same order), and a look
        # lit at or below `self_shadow` counts as shadowed; the chosen look's own reflectance is returned.
        n_time, n_band, ny, nx = refl.shape
        row = np.empty((n_time, n_band, nx), np.float32)
        cor = np.empty((n_time, n_band, nx), np.float32) if correct else row
        light = np.ones((n_time, nx), np.float32)
        inv = np.empty(nx, np.float32)
        one = np.float32(1.0)
        nan = np.float32(np.nan)
        valid = np.empty((n_time, nx), np.bool_)
        use = np.empty((n_time, nx), np.bool_)
        any_lit = np.empty(nx, np.bool_)
        limit = np.empty((n_band, nx), np.float32)
        low = np.empty(nx, np.float32)
        pick = np.empty(nx, np.int64)
        ninf = np.float32(-np.inf)
        seen = np.empty(n_time, np.bool_)
        for i in range(ny):
            for t in range(n_time):  # a look with no clear pixel on this row (outside its footprint) is never read
                seen[t] = False
                for j in range(nx):
                    seen[t] = seen[t] | clear[t, i, j]
            for t in range(n_time):
                if not seen[t]:
                    continue
                for b in range(n_band):
                    if convert:
                        sc, of = scale[t, b], offset[t, b]
                        for j in range(nx):
                            d = refl[t, b, i, j]
                            v = np.float32(d) * sc + of
                            row[t, b, j] = v if d != 0 else nan
                    else:
                        for j in range(nx):
                            row[t, b, j] = refl[t, b, i, j]
            if correct:
                for t in range(n_time):
                    if not seen[t]:
                        continue
                    c_north, c_east = coef[t, 0], coef[t, 1]
                    for j in range(nx):
                        light[t, j] = terms[0, i, j] + (c_north * terms[1, i, j] + c_east * terms[2, i, j])
                        inv[j] = one / max(light[t, j], floor)
                    for b in range(n_band):
                        for j in range(nx):
                            cor[t, b, j] = row[t, b, j] * inv[j]
            for j in range(nx):
                count[i, j] = 0
                any_lit[j] = False
            for t in range(n_time):
                for j in range(nx):
                    valid[t, j] = clear[t, i, j]
                if seen[t]:
                    for b in range(n_band):
                        for j in range(nx):
                            valid[t, j] = valid[t, j] & np.isfinite(row[t, b, j])
                for j in range(nx):
                    count[i, j] += valid[t, j]
                    use[t, j] = valid[t, j]
            if sunlit:
                for b in range(n_band):
                    for j in range(nx):
                        limit[b, j] = ninf
                    for t in range(n_time):
                        for j in range(nx):
                            limit[b, j] = max(limit[b, j], cor[t, b, j] if valid[t, j] else ninf)
                    for j in range(nx):
                        limit[b, j] = factor * limit[b, j]
                for t in range(n_time):  # `use` holds "valid and dark in every band so far"
                    for b in range(n_band):
                        for j in range(nx):
                            use[t, j] = use[t, j] & (cor[t, b, j] < limit[b, j])
                    if correct:
                        for j in range(nx):
                            use[t, j] = use[t, j] | (light[t, j] <= self_shadow)
                    for j in range(nx):
                        use[t, j] = valid[t, j] & ~use[t, j]  # now: valid and sunlit
                        any_lit[j] = any_lit[j] | use[t, j]
                for t in range(n_time):
                    for j in range(nx):
                        use[t, j] = use[t, j] | (valid[t, j] & ~any_lit[j])
            for j in range(nx):
                low[j] = np.inf
                pick[j] = -1
            for t in range(n_time):  # `<=`: ties go to the later observation
                for j in range(nx):
                    k = cor[t, key_index, j]
                    better = use[t, j] & (k <= low[j])
                    low[j] = k if better else low[j]
                    pick[j] = t if better else pick[j]
            for j in range(nx):
                doy[i, j] = doys[pick[j]] if pick[j] >= 0 else 0
            for b in range(n_band):
                for j in range(nx):
                    best[b, i, j] = row[pick[j], b, j] if pick[j] >= 0 else np.nan

    return select


_SELECT_NUMBA = _select_kernel()


def select_observations(
    refl: np.ndarray,
    clear: np.ndarray,
    key_index: int,
    doys: np.ndarray | None = None,
    rule: str = "sunlit-darkest",
    factor: float = SHADOW_FACTOR,
    engine: str = "auto",
    scale: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    terms: np.ndarray | None = None,
    sun: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy kernel: refl (time, band, y, x), clear (time, y, x) -> best (band, y, x) float32, count, doy (y, x) uint16.

    `refl` is reflectance, or integer DNs with their `scale` and `offset` (time, band): the
    kernel then converts each row as it reads it (the same float32 values as
    catalog.cube.reflectance_values). `doys` (time,) is each observation's day of year; the
    returned doy is the chosen observation's, 0 where there is none (best NaN, count 0).
    `engine`: "numba", "numpy" or "auto" (numba where installed); both give the same bytes.
    `terms` (3, y, x; catalog.sun.illumination_terms of the slope and aspect) and `sun` (time, 2:
    each look's sun azimuth and elevation, degrees) give each look's direct illumination relative
    to flat ground (catalog.sun). With them the `sunlit-darkest` rule compares the looks on
    reflectance / max(light, LIGHT_FLOOR) - what the surface reflects, not how it was lit - and
    counts a look lit at or below SELF_SHADOW as shadowed; the chosen look's own reflectance is
    returned. The `darkest` rule ignores them.
    """
    if rule not in RULES:
        raise ValueError(f"composite rule {rule!r} is unknown: use one of {RULES}")
    convert = np.issubdtype(np.asarray(refl).dtype, np.integer)
    n_time, n_band = refl.shape[:2]
    if convert:
        if scale is None or offset is None:
            raise ValueError("integer DNs need their scale and offset (time, band) to become reflectance")
        scale, offset = np.asarray(scale, np.float32), np.asarray(offset, np.float32)
    else:
        refl = np.asarray(refl, np.float32)
        scale, offset = np.ones((n_time, n_band), np.float32), np.zeros((n_time, n_band), np.float32)
    clear = np.asarray(clear, bool)
    doys = np.zeros(n_time, np.uint16) if doys is None else np.asarray(doys, np.uint16)
    best = np.empty(refl.shape[1:], np.float32)
    count = np.empty(refl.shape[2:], np.uint16)
    doy = np.empty(refl.shape[2:], np.uint16)
    outputs = (best, count, doy)
    correct = terms is not None and rule == "sunlit-darkest"
    coef = None
    if correct:
        terms = np.ascontiguousarray(terms, np.float32)
        if terms.shape != (3, *refl.shape[2:]):
            raise ValueError(f"terms have shape {terms.shape}; the looks need (3, y, x) = {(3, *refl.shape[2:])}")
        sun = np.asarray(sun, float)
        if sun.shape != (n_time, 2):
            raise ValueError(f"sun has shape {sun.shape}; the looks need (time, 2) = {(n_time, 2)}: azimuth, elevation per look")
        coef = sun_coefficients(sun[:, 0], sun[:, 1])
    if engine == "numpy" or (engine == "auto" and _SELECT_NUMBA is None):
        if convert:
            refl = reflectance_values(refl, scale[:, :, None, None], offset[:, :, None, None])
        _select_numpy(refl, clear, key_index, doys, rule == "sunlit-darkest", np.float32(factor), *outputs, terms, coef)
    elif _SELECT_NUMBA is not None and engine in ("auto", "numba"):
        _SELECT_NUMBA(refl, clear, key_index, doys, rule == "sunlit-darkest", np.float32(factor), *outputs, convert, scale, offset,
                      correct, terms if correct else np.ones((3, 1, 1), np.float32),
                      coef if correct else np.zeros((n_time, 2), np.float32), np.float32(LIGHT_FLOOR), np.float32(SELF_SHADOW))
    else:
        raise ValueError(f"composite engine {engine!r}: use 'auto', 'numpy' or 'numba' (numba must be installed)")
    return best, count, doy


def _select_block(refl, clear, terms=None, **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`select_observations` on one chunk as `dask.array.blockwise` hands it over without concatenating:
    lists of one block per contracted axis (time, band; the term), in the kernel's own layout."""
    refl, clear = refl[0][0], clear[0]
    return select_observations(refl, clear, terms=None if terms is None else terms[0], **kwargs)


def _select_lazy(refl: da.Array, clear: da.Array, terms: da.Array | None, kwargs: dict) -> tuple[da.Array, da.Array, da.Array]:
    """The per-chunk selection of a year's looks: `refl` (time, band, y, x) and `clear` (time, y, x), one
    chunk along time and band, `terms` (3, y, x) -> best (band, y, x) float32, count and doy (y, x) uint16.

    One task per chunk takes the blocks as they are. `xr.apply_ufunc(dask="parallelized")` moved time
    and band last and concatenated each chunk into that order before the kernel ran (a strided copy of a
    piece's year of DNs: ~0.3 s for 40 MB, a seventh of a sparse region's Sentinel-2 work), and the kernel,
    which reads one row of one look and band at a time, then read it across that layout's strides."""
    args = [refl, "tbyx", clear, "tyx", *([terms, "kyx"] if terms is not None else [])]
    name = f"select-observations-{tokenize(refl, clear, terms, kwargs)}"
    tmp = da.blockwise(functools.partial(_select_block, **kwargs), "yx", *args, name=name, concatenate=False, dtype=object,
                       meta=np.empty((0, 0), object))
    keys = list(itertools.product(range(tmp.numblocks[0]), range(tmp.numblocks[1])))
    outputs = []
    for k, (lead, dtype) in enumerate((((refl.shape[1],), np.float32), ((), np.uint16), ((), np.uint16))):
        leaf = f"{name}-{k}"
        dsk = {(leaf, *((0,) if lead else ()), i, j): (operator.getitem, (name, i, j), k) for i, j in keys}
        graph = HighLevelGraph.from_collections(leaf, dsk, dependencies=[tmp])
        outputs.append(da.Array(graph, leaf, tuple((n,) for n in lead) + tmp.chunks, meta=np.empty((0,) * (len(lead) + 2), dtype)))
    return tuple(outputs)


def _as_slice(steps: list[int]) -> slice | list[int]:
    """`steps` as a slice where they are consecutive (a year's time-sorted looks, all in season).

    dask takes a list of indices by copying every selected block (its `shuffle-taker` tasks: one
    more copy of a piece's scenes, ~40 MB, and ~3 % of the Sentinel-2 stage's task time on the x4
    area), while a slice of a year's own time chunk is a view."""
    if steps and steps == list(range(steps[0], steps[-1] + 1)):
        return slice(steps[0], steps[-1] + 1)
    return steps


def yearly_composite(
    cube: xr.DataArray,
    clear: xr.DataArray,
    season: tuple[str, str] | None = None,
    key_band: str | None = None,
    rule: str = "sunlit-darkest",
    slope: xr.DataArray | None = None,
    aspect: xr.DataArray | None = None,
) -> xr.Dataset:
    """Yearly composite `reflectance` (year, band, y, x) float32, `clear_count` and `doy` (year, y, x) uint16.

    `cube` is a reflectance cube (time, band, y, x), or a DN cube (catalog.cube.dn_cube: integer
    DNs with `scale` and `offset` coords) that is converted only where the kernel looks, with
    the same result; `clear` is (time, y, x) boolean, True
    where the quality layer says the observation is usable (catalog.masks.clear_mask).
    An observation also needs every band finite. `season` ("MM-DD", "MM-DD") keeps only
    observations inside it (inclusive), each in its season's year (`catalog.scenes.season_years`:
    a season crossing the new year is labelled by the year it ends in); default: all, by calendar
    year. A pixel with no clear observation in a year is NaN with clear_count 0. `doy` is the
    calendar day of year (1-366) of the observation each pixel was taken from, 0 where there is
    none (a December look of a season crossing the new year is from the year before:
    `catalog.scenes.look_years`): what was observed, and when, travels beside
    the reflectance so that "not observed" is never read as "not glacier" (DESIGN.md, Observed
    vs. glacier) and change rates can divide by the real time between observations. `rule`: one
    of RULES (see the module docstring). Lazy if `cube` is.

    `slope` and `aspect` (y, x, degrees; catalog.terrain) with the cube's `sun_azimuth` and
    `sun_elevation` coords (time; catalog.cube.dn_cube from each item's metadata): the
    `sunlit-darkest` rule then compares the looks on reflectance divided by their direct
    illumination on the slope (catalog.sun), so that a low September sun on a slope turned
    from it does not pass for the least snow. Without them, flat ground is assumed.
    """
    if rule not in RULES:
        raise ValueError(f"composite rule {rule!r} is unknown: use one of {RULES}")
    _check_aligned(cube, clear)
    corrected = slope is not None or aspect is not None
    if corrected:
        if slope is None or aspect is None:
            raise ValueError("the illumination correction needs both slope and aspect (catalog.terrain)")
        missing = {"sun_azimuth", "sun_elevation"} - set(cube.coords)
        if missing:
            raise ValueError(f"the illumination correction needs the cube's {sorted(missing)} coords: build it with catalog.cube.dn_cube")
        sun = np.stack([cube["sun_azimuth"].values, cube["sun_elevation"].values], axis=-1).astype(np.float64)
        slope = slope.reset_coords(drop=True).assign_coords(y=cube.y, x=cube.x).astype(np.float32)
        aspect = aspect.reset_coords(drop=True).assign_coords(y=cube.y, x=cube.x).astype(np.float32)
        if cube.chunks is not None:  # the terrain's chunks follow the cube's, so each task gets its own window
            space = {"y": cube.chunksizes["y"], "x": cube.chunksizes["x"]}
            slope, aspect = slope.chunk(space), aspect.chunk(space)
        # worked out once per chunk and shared by every year's task: (3, y, x)
        if isinstance(slope.data, da.Array) or isinstance(aspect.data, da.Array):
            terms = da.map_blocks(illumination_terms, da.asarray(slope.data), da.asarray(aspect.data), new_axis=0,
                                  chunks=((3,), *da.asarray(slope.data).chunks), dtype=np.float32)
        else:
            terms = illumination_terms(slope.values, aspect.values)
    kb = _key_band(cube, key_band)
    dn = np.issubdtype(cube.dtype, np.integer)
    if dn and not {"scale", "offset"} <= set(cube.coords):
        raise ValueError("an integer cube needs `scale` and `offset` coords (time, band): build it with catalog.cube.dn_cube")
    scale = np.asarray(cube["scale"].transpose("time", "band").values, np.float32) if dn else None
    offset = np.asarray(cube["offset"].transpose("time", "band").values, np.float32) if dn else None
    cube = cube.reset_coords(drop=True).transpose("time", "band", "y", "x")  # the kernel's layout
    clear = clear.reset_coords(drop=True).astype(bool).transpose("time", "y", "x")
    times = pd.DatetimeIndex(cube.time.values)
    season_of = season_years(times, season)  # a look's year is its season's (December's is the next year's where it crosses)
    years = sorted({y for y in season_of if y is not None})
    if not years:
        raise ValueError(f"no observation of the cube falls in season {season}: widen the season")
    key_index = [str(b) for b in cube.band.values].index(kb)
    refl, counts, doys = [], [], []
    for year in years:
        steps = [i for i, y in enumerate(season_of) if y == year]
        looks = _as_slice(steps)
        kwargs = {"key_index": key_index, "doys": times[steps].dayofyear.to_numpy().astype(np.uint16), "rule": rule,
                  "factor": SHADOW_FACTOR, "scale": scale[steps] if dn else None, "offset": offset[steps] if dn else None,
                  "sun": sun[steps] if corrected else None}
        looks_dn, looks_clear = cube.isel(time=looks).data, clear.isel(time=looks).data
        if isinstance(looks_dn, da.Array) or isinstance(looks_clear, da.Array):
            looks_dn = da.asarray(looks_dn).rechunk({0: -1, 1: -1})
            space = looks_dn.chunks[2:]
            looks_clear = da.asarray(looks_clear).rechunk((-1, *space))
            year_terms = da.asarray(terms).rechunk(((3,), *space)) if corrected else None
            best, count, doy = _select_lazy(looks_dn, looks_clear, year_terms, kwargs)
        else:
            best, count, doy = select_observations(np.asarray(looks_dn), np.asarray(looks_clear), terms=terms if corrected else None,
                                                   **kwargs)
        plane = {"y": cube.y, "x": cube.x}
        best = xr.DataArray(best, dims=("band", "y", "x"), coords={"band": cube.band, **plane})
        count, doy = (xr.DataArray(v, dims=("y", "x"), coords=plane) for v in (count, doy))
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
            "composite_rule": (
                f"per pixel, the clear observation with the lowest {kb} reflectance; ties to the later date"
                if rule == "darkest"
                else f"per pixel, the clear sunlit observation with the lowest {kb} reflectance"
                + (f" divided by its direct illumination on the slope (floor {LIGHT_FLOOR:g}; self-shadow at or below "
                   f"{SELF_SHADOW:g})" if corrected else "")
                + f" (in shadow: darker than {SHADOW_FACTOR:g} x the year's brightest clear look in every band; used only "
                "where no look is sunlit); ties to the later date"
            ),
            "composite_rule_name": rule,
            "illumination_corrected": int(corrected and rule == "sunlit-darkest"),
            "season": list(season) if season else "all",
        },
    )
    out["reflectance"].attrs = {k: v for k, v in cube.attrs.items() if k != "skipped_scenes"}
    out["clear_count"].attrs = {"long_name": "clear observations per pixel and year", "units": "1"}
    out["doy"].attrs = {"long_name": "day of year of the observation the pixel comes from (0 = none)", "units": "1"}
    return out
