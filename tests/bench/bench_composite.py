"""Benchmark: which composite rule maps the synthetic truth best, and how fast the composite runs.

Not collected by pytest. Usage:
    .venv/bin/python tests/bench/bench_composite.py --area /tmp/sa [--skip-rules] [--skip-speed] [--repeats 5] [--json OUT]

1. Rules (docs/composite.md): every year 2016-2022 of both sensors of a generated area
   (`glacierwatch synth`), composited with each candidate rule and classified by a glacier
   test independent of the trained networks - red/SWIR1 > 2, NDSI > 0.4 and green > 0.10
   (band ratio as Paul et al.; SNOMAP's brightness test, so that ice shown in shadow counts
   as missed, as it does for the networks) - against the truth rasters (glacier fraction
   > 0.5). Per rule: area error, share of truth ice lost, IoU, share of truth ice composited
   from a terrain-shadowed look (S2: SCL class 2, which the generator sets from its own
   shadow model) and share of ice shown as snow (green > 0.8).
2. Speed: one year's S2 stack of a 512 x 512 window in memory (DNs and SCL, as a task gets
   them from the read), turned into the composite by today's path (`after_sunlit_dn_lit`: the
   SCL bit test of catalog.masks, then catalog.composite's kernel reading the DNs, converting
   each row and lighting each look as it goes; plus `terms_per_chunk`, the terrain's illumination
   terms, worked out once per chunk for all years) and by the old one (`before`: scale/offset to float32, np.isin mask,
   the kernel before the speed work, kept below as the baseline), one thread, best of
   --repeats. Outputs of the `darkest` rule are checked byte for byte against the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the reference kernel lives in tests/test_composite.py

G, R, S1 = 1, 2, 4  # green, red, SWIR-1.6 in both sensors' band order


def old_best_observation(refl, clear, key_index, doys=None):
    """The kernel before the speed work: the reference tests/test_composite.py keeps, as the baseline."""
    from test_composite import _old_darkest

    return _old_darkest(refl, clear, key_index, np.zeros(refl.shape[-2], np.uint16) if doys is None else doys)


def load_year(area: Path, sensor: str, year: int):
    """(reflectance (time, band, y, x), quality (time, y, x), doys, truth glacier mask, light) of one year.

    `light`: (terms (3, y, x), sun (time, 2)), what a run gives the composite to light each look on the
    DEM's slopes (catalog.sun)."""
    import dask
    import pandas as pd

    from catalog.cube import quality_cube, reflectance_cube
    from catalog.grid import TargetGrid
    from catalog.providers import get_profile
    from catalog.scenes import find_dem_items, find_scenes
    from catalog.search import open_source
    from catalog.sun import illumination_terms
    from catalog.synthetic.truth import truth_on_grid
    from catalog.terrain import terrain

    bbox = tuple(json.loads((area / "synthetic.json").read_text())["bbox"])
    profile = get_profile("local")
    items = find_scenes(open_source(str(area / "catalog.json")), profile, sensor, bbox, year, ("07-01", "09-30"), None)
    grid = TargetGrid.from_lonlat_bbox(bbox, 10 if sensor == "sentinel-2" else 30)
    cube = reflectance_cube(items, profile, sensor, grid, chunks=2048)
    quality = quality_cube(items, profile, sensor, grid, chunks=2048)
    terr = terrain(find_dem_items(open_source(str(area / "catalog.json")), profile, bbox), profile, grid, chunks=2048)
    with dask.config.set(scheduler="threads"):
        refl, qual, slope, aspect = dask.compute(cube.data, quality.data, terr.slope.data, terr.aspect.data)
    light = (illumination_terms(slope, aspect), np.column_stack([cube.sun_azimuth.values, cube.sun_elevation.values]))
    truth = truth_on_grid(area / "truth", grid, [year]).glacier_fraction.values[0] > 0.5
    return refl, qual, pd.DatetimeIndex(cube.time.values).dayofyear.to_numpy().astype(np.uint16), truth, light


def classify(best: np.ndarray) -> np.ndarray:
    g, r, s = best[G], best[R], best[S1]
    with np.errstate(all="ignore"):
        return (r / s > 2) & ((g - s) / (g + s) > 0.4) & (g > 0.10)


def _pick(refl, use, score):
    """Maximise `score` (time, y, x) among `use`; ties to the later look. -> (best, index)."""
    sc = np.where(use, score, -np.inf)
    idx = sc.shape[0] - 1 - np.argmax(sc[::-1], axis=0)
    best = np.take_along_axis(refl, idx[None, None], axis=0)[0]
    best[:, ~use.any(axis=0)] = np.nan
    return best, idx


def candidates(refl, valid, doys, light) -> dict:
    """Each candidate rule's (best, index); the library's rules through catalog.composite itself."""
    from catalog.composite import select_observations

    g, s1 = refl[:, G], refl[:, S1]
    out = {}
    for rule, name, lit in (("darkest", "a. darkest green (before)", None),
                            ("sunlit-darkest", "d. darkest green among sunlit looks", None),
                            ("sunlit-darkest", "f. d, looks lit alike (chosen)", light)):
        terms, sun = lit if lit is not None else (None, None)
        best, _, doy = select_observations(refl, valid, G, np.arange(1, refl.shape[0] + 1, dtype=np.uint16), rule=rule,
                                           terms=terms, sun=sun)
        out[name] = (best, np.maximum(doy.astype(int) - 1, 0))  # doy here = index + 1: the chosen look
    out["b. latest clear look"] = _pick(refl, valid, np.broadcast_to(doys[:, None, None].astype(float), g.shape))
    with np.errstate(all="ignore"):
        out["c. lowest NDSI"] = _pick(refl, valid, -(g - s1) / (g + s1))
    out["c'. highest SWIR1"] = _pick(refl, valid, s1)
    with np.errstate(all="ignore"):
        med = np.nanmedian(np.where(valid[:, None], refl, np.nan), axis=0)
    out["e. medoid (closest to the per-band median)"] = _pick(refl, valid, -np.nansum((refl - med[None]) ** 2, axis=1))
    return out


def rules(area: Path, years: list[int]) -> dict:
    from catalog.masks import clear_mask

    res: dict = {}
    for sensor in ("sentinel-2", "landsat"):
        for year in years:
            refl, qual, doys, truth, light = load_year(area, sensor, year)
            valid = np.asarray(clear_mask(qual, sensor)) & np.isfinite(refl).all(axis=1)
            n = truth.sum()
            for name, (best, idx) in candidates(refl, valid, doys, light).items():
                c = classify(best)
                look_q = np.take_along_axis(qual, idx[None], axis=0)[0]
                shadow = (look_q == 2) & truth if sensor == "sentinel-2" else None
                row = {"area_error": float(c.sum() / n - 1), "lost": float((truth & ~c).sum() / n),
                       "iou": float((c & truth).sum() / (c | truth).sum()),
                       "ice_from_shadow": float(shadow.sum() / n) if shadow is not None else None,
                       "ice_as_snow": float((best[G][truth] > 0.8).mean()), "ice_dark": float((best[G][truth] < 0.15).mean())}
                res.setdefault(sensor, {}).setdefault(name, {})[year] = row
            print(f"{sensor} {year}: {len(doys)} looks", flush=True)
    return res


def print_rules(res: dict) -> None:
    for sensor, by_rule in res.items():
        print(f"\n{sensor}: mean over years (worst year)")
        print("| rule | area error | truth ice lost | IoU | ice from a shadowed look | ice shown as snow |\n|---|---|---|---|---|---|")
        for name, by_year in by_rule.items():
            v = list(by_year.values())
            a = [abs(r["area_error"]) for r in v]
            lost = [r["lost"] for r in v]
            iou = [r["iou"] for r in v]
            sh = [r["ice_from_shadow"] for r in v if r["ice_from_shadow"] is not None]
            shs = f"{100 * np.mean(sh):.2f} % ({100 * max(sh):.2f})" if sh else "-"
            print(f"| {name} | {100 * np.mean(a):.1f} % ({100 * max(a):.1f}) | {100 * np.mean(lost):.2f} % ({100 * max(lost):.2f}) | "
                  f"{np.mean(iou):.3f} ({min(iou):.3f}) | {shs} | {100 * np.mean([r['ice_as_snow'] for r in v]):.1f} % |")


def speed(area: Path, repeats: int, size: int = 512) -> dict:
    from catalog.composite import RULES, select_observations
    from catalog.cube import reflectance_values
    from catalog.masks import SCL_INVALID, clear_mask
    from catalog.sun import illumination_terms

    refl, qual, doys, _, (terms, sun) = load_year(area, "sentinel-2", 2021)
    refl, qual, terms = refl[:, :, :size, :size].copy(), qual[:, :size, :size].copy(), terms[:, :size, :size].copy()
    dn = np.where(np.isnan(refl), 0, np.rint(refl / 1e-4)).astype(np.uint16)  # the read's DNs (scale 1e-4, no offset)
    n_time, n_band = dn.shape[:2]
    scale = np.full((n_time, n_band, 1, 1), 1e-4, np.float32)
    offset = np.zeros((n_time, n_band, 1, 1), np.float32)
    obs = n_time * size * size

    def best_of(fn):
        best = np.inf
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    def before():  # float32 cube, np.isin mask, old kernel on apply_ufunc's (y, x, time, band) layout
        r = reflectance_values(dn, scale, offset)
        c = ~np.isin(qual, SCL_INVALID)
        return old_best_observation(np.moveaxis(r, (0, 1), (-2, -1)), np.moveaxis(c, 0, -1), G, doys)

    def after(rule):
        r = reflectance_values(dn, scale, offset)
        c = clear_mask(qual, "sentinel-2")
        return select_observations(r, c, G, doys, rule, 0.5)

    def after_dn(rule, lit=False):  # DNs into the kernel, converted row by row as it reads them (what yearly_cube runs)
        c = clear_mask(qual, "sentinel-2")
        return select_observations(dn, c, G, doys, rule, 0.5, scale=scale[:, :, 0, 0], offset=offset[:, :, 0, 0],
                                   terms=terms if lit else None, sun=sun if lit else None)

    slope = np.random.default_rng(0).uniform(0, 60, (size, size)).astype(np.float32)

    a, b = before(), after("darkest")
    b = (np.moveaxis(b[0], 0, -1), *b[1:])  # the old kernel's (y, x, band) best
    identical = all(x.tobytes() == y.tobytes() for x, y in zip(a, b))
    identical_dn = all(x.tobytes() == y.tobytes() for rule in RULES for x, y in zip(after(rule), after_dn(rule)))
    r = reflectance_values(dn, scale, offset)
    c = clear_mask(qual, "sentinel-2")
    t = {
        "before": best_of(before),
        "after_darkest": best_of(lambda: after("darkest")),
        "after_sunlit": best_of(lambda: after("sunlit-darkest")),
        "after_sunlit_dn": best_of(lambda: after_dn("sunlit-darkest")),
        "after_sunlit_dn_lit": best_of(lambda: after_dn("sunlit-darkest", lit=True)),
        "terms_per_chunk": best_of(lambda: illumination_terms(slope, slope * 6)),
        "to_reflectance": best_of(lambda: reflectance_values(dn, scale, offset)),
        "mask_isin": best_of(lambda: ~np.isin(qual, SCL_INVALID)),
        "mask_lookup": best_of(lambda: clear_mask(qual, "sentinel-2")),
        "kernel_old": best_of(lambda: old_best_observation(np.moveaxis(r, (0, 1), (-2, -1)), np.moveaxis(c, 0, -1), G, doys)),
        "kernel_darkest": best_of(lambda: select_observations(r, c, G, doys, "darkest")),
        "kernel_sunlit": best_of(lambda: select_observations(r, c, G, doys, "sunlit-darkest")),
        "kernel_sunlit_numpy": best_of(lambda: select_observations(r, c, G, doys, "sunlit-darkest", engine="numpy")),
        "copy_uint16": best_of(lambda: dn.copy()),
    }
    print(f"\nspeed: one year of S2 ({n_time} looks x {n_band} bands) on {size} x {size} px = {obs / 1e6:.2f} Mpx of scene observations, "
          f"one thread, best of {repeats}; darkest rule byte-identical to the baseline: {identical}; DN path byte-identical "
          f"to the float path, both rules: {identical_dn}")
    for k, v in t.items():
        print(f"  {k:20s} {v * 1e3:8.1f} ms  {obs / v / 1e6:7.1f} Mpx/s  vs before {t['before'] / v:5.2f}x")
    return {"observations": obs, "identical_darkest": identical, "identical_dn": identical_dn, "seconds": t}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--area", type=Path, default=Path("/tmp/sa"))
    ap.add_argument("--years", type=int, nargs="+", default=list(range(2016, 2023)))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-rules", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict = {}
    if not args.skip_rules:
        out["rules"] = rules(args.area, args.years)
        print_rules(out["rules"])
    if not args.skip_speed:
        out["speed"] = speed(args.area, args.repeats)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
