"""Benchmark: reading scenes through reflectance_cube vs raw rasterio, and composite memory vs area.

Not collected by pytest. Usage:
    .venv/bin/python tests/bench/bench_cube_read.py [--area /tmp/sa] [--big /tmp/sa4] [--threads 2] [--chunks 512]
        [--repeats 3] [--skip-memory] [--json OUT.json]

1. Throughput: N Sentinel-2 scenes of one UTM zone on that zone's grid, computed as the raw
   uint16 stack, as `dn_cube` (the DNs a run reads; the composite converts what it selects) and
   as the float32 reflectance cube, against rasterio windowed reads of the same COG windows into
   numpy with the same number of threads. Target: dn_cube >= 0.7x rasterio.
2. Peak memory: a yearly composite stored to Zarr, default area vs a 4x area (same chunks),
   each in a fresh process started with the environment a production worker gets (distributed's
   Nanny pre-spawn settings, e.g. MALLOC_TRIM_THRESHOLD_). Target: the 4x area within 1.3x of the default's peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _items(area: Path, sensor: str = "sentinel-2", year: int | None = None):
    from catalog.providers import get_profile
    from catalog.scenes import find_scenes
    from catalog.search import open_source

    bbox = tuple(json.loads((area / "synthetic.json").read_text())["bbox"])
    source, profile = open_source(str(area / "catalog.json")), get_profile("local")
    years = [year] if year else json.loads((area / "synthetic.json").read_text())["spec"]["years"]
    items = [i for y in years for i in find_scenes(source, profile, sensor, bbox, y, ("06-01", "09-30"), None)]
    return items, bbox, profile


def throughput(area: Path, threads: int, chunks: int, repeats: int = 3) -> dict:
    import dask
    import rasterio
    from rasterio.windows import from_bounds

    from catalog.cube import dn_cube, reflectance_cube, stack_assets
    from catalog.grid import TargetGrid
    from catalog.providers import REFLECTANCE_BANDS
    from catalog.scene_check import prepare_scene_items

    items, bbox, profile = _items(area)
    items = [i for i in items if i.properties["proj:code"] == "EPSG:32644"]
    grid = TargetGrid.from_lonlat_bbox(bbox, 10, epsg=32644)
    keys = [profile.asset_key("sentinel-2", b) for b in REFLECTANCE_BANDS["sentinel-2"]]
    hrefs = [i.assets[k].href for i in items for k in keys]
    n_px = len(hrefs) * grid.shape[0] * grid.shape[1]

    def rio_read(href: str) -> np.ndarray:
        with rasterio.open(href) as ds:
            # The same window, boundless (the grid runs past the tile), at the grid's 10 m pixels.
            win = from_bounds(*grid.bounds, transform=ds.transform)
            return ds.read(1, window=win, out_shape=grid.shape, boundless=True, fill_value=0)

    def timed(fn, repeat=repeats):
        best = np.inf
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    with ThreadPoolExecutor(threads) as pool:
        # Stacked into one array, as a computed cube is.
        t_rio = timed(lambda: np.stack(list(pool.map(rio_read, hrefs))))
    prepared, _ = prepare_scene_items(items, profile, "sentinel-2", grid)
    with dask.config.set(scheduler="threads", num_workers=threads):
        raw = stack_assets(prepared, keys, grid, __import__("rasterio").enums.Resampling.nearest, np.uint16(0), chunks)
        t_raw = timed(lambda: raw.compute())
        dn = dn_cube(items, profile, "sentinel-2", grid, chunks=chunks)  # what a run reads (the composite converts)
        t_dn = timed(lambda: dn.compute())
        cube = reflectance_cube(items, profile, "sentinel-2", grid, chunks=chunks)
        t_cube = timed(lambda: cube.compute())
    print(f"throughput: {len(items)} scenes x {len(keys)} bands, grid {grid.shape}, {threads} threads, chunks {chunks}")
    for name, t in (("rasterio windowed reads", t_rio), ("stackstac uint16 stack", t_raw), ("dn_cube uint16", t_dn),
                    ("reflectance_cube float32", t_cube)):
        print(f"  {name:26s} {t:6.2f} s  {n_px / t / 1e6:7.1f} Mpx/s  ratio vs rasterio {t_rio / t:5.2f}x")
    # n_px samples of uint16 each: what the read rate in pipeline/scale/plan/rates.yaml counts
    return {"scenes": len(items), "bands": len(keys), "grid": list(grid.shape), "threads": threads, "chunks": chunks,
            "samples": n_px, "bytes_uint16": 2 * n_px, "rasterio_s": t_rio, "stackstac_uint16_s": t_raw, "dn_cube_s": t_dn,
            "cube_s": t_cube}


def _composite_peak(area: str, chunks: int, threads: int) -> None:
    """Child process: yearly composite of one year stored to Zarr; prints peak RSS over the baseline."""

    from catalog.composite import yearly_composite
    from catalog.cube import dn_cube, quality_cube
    from catalog.grid import TargetGrid
    from catalog.masks import clear_mask
    from catalog.scenes import find_dem_items
    from catalog.search import open_source
    from catalog.terrain import terrain

    items, bbox, profile = _items(Path(area), year=2021)
    grid = TargetGrid.from_lonlat_bbox(bbox, 10)
    # DNs, as pipeline.inference.yearly_cube gives them: the kernel converts what it looks at,
    # and lights each look on the DEM's slopes.
    cube = dn_cube(items, profile, "sentinel-2", grid, chunks=chunks)
    clear = clear_mask(quality_cube(items, profile, "sentinel-2", grid, chunks=chunks), "sentinel-2")
    terr = terrain(find_dem_items(open_source(str(Path(area) / "catalog.json")), profile, bbox), profile, grid, chunks=chunks)
    comp = yearly_composite(cube, clear, slope=terr.slope.assign_coords(y=cube.y, x=cube.x), aspect=terr.aspect.assign_coords(y=cube.y, x=cube.x))
    for v in comp.variables.values():
        v.attrs.clear()
    import threading

    import psutil

    # ru_maxrss would carry the parent's peak across fork/exec: sample this process's RSS instead.
    proc, samples, done = psutil.Process(), [], threading.Event()

    def sample():
        while not done.is_set():
            samples.append(proc.memory_info().rss)
            time.sleep(0.005)

    base = proc.memory_info().rss / 2**20
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    # The production path: a distributed worker (in this process, so its memory is measured),
    # whose scheduler queues root tasks instead of reading ahead of the reduction.
    from distributed import Client, LocalCluster

    with LocalCluster(processes=False, n_workers=1, threads_per_worker=threads, dashboard_address=None) as cluster, Client(
        cluster
    ), tempfile.TemporaryDirectory() as tmp:
        comp.to_zarr(Path(tmp) / "c.zarr", mode="w", consolidated=False)
    done.set()
    sampler.join()
    peak = max(samples) / 2**20
    print(json.dumps({"grid": grid.shape, "scenes": len(items), "seconds": time.perf_counter() - t, "base_mb": base, "peak_mb": peak}))


def worker_environ() -> dict[str, str]:
    """The environment a production worker process starts with: distributed's Nanny sets
    `distributed.nanny.pre-spawn-environ` before the interpreter starts (glibc reads
    MALLOC_TRIM_THRESHOLD_ only then). `glacierwatch run`'s LocalCluster, dask-jobqueue and the
    Kubernetes workers all start workers through a Nanny; the child measured here gets the same."""
    import dask
    import distributed  # noqa: F401  (loads distributed's config defaults)

    extra = dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}
    return {**os.environ, **{k: str(v) for k, v in extra.items()}}


def memory(area: Path, big: Path, threads: int, chunks: int) -> dict:
    out = {}
    env = worker_environ()
    for name, path in (("default", area), ("size=4", big)):
        res = subprocess.run(
            [sys.executable, __file__, "--child", str(path), "--chunks", str(chunks), "--threads", str(threads)],
            check=False, capture_output=True, text=True, env=env,
        )
        if res.returncode != 0:
            raise RuntimeError(f"composite of {path} failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")
        out[name] = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"peak memory of a yearly composite (2021, S2) stored to Zarr, chunks {chunks}, one distributed worker, {threads} threads:")
    for name, r in out.items():
        print(f"  {name:8s} grid {tuple(r['grid'])} {r['scenes']} scenes {r['seconds']:5.1f} s  "
              f"peak RSS {r['peak_mb']:6.0f} MB (above imports {r['peak_mb'] - r['base_mb']:6.0f} MB)")
    d, b = out["default"], out["size=4"]
    print(f"  ratio size=4 / default: peak RSS {b['peak_mb'] / d['peak_mb']:.2f}x, "
          f"above imports {(b['peak_mb'] - b['base_mb']) / (d['peak_mb'] - d['base_mb']):.2f}x (target <= 1.3x)")
    return {"threads": threads, "chunks": chunks, "small": d, "big": b}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--area", default="/tmp/sa")
    ap.add_argument("--big", default="/tmp/sa4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunks", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3, help="throughput: best of this many")
    ap.add_argument("--skip-memory", action="store_true", help="throughput only")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        _composite_peak(args.child, args.chunks, args.threads)
    else:
        res = {"throughput": throughput(Path(args.area), args.threads, 2048, args.repeats)}
        if not args.skip_memory:
            res["memory"] = memory(Path(args.area), Path(args.big), args.threads, args.chunks)
        if args.json:
            args.json.write_text(json.dumps(res, indent=1))
