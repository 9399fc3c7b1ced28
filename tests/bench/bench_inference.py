"""Chunked inference: the halo the trained model needs, and Dask pipeline throughput vs bare forward.

    .venv/bin/python tests/bench/bench_inference.py [--weights /tmp/train_unet16/sentinel-2/sentinel-2-unet.safetensors]
        [--area /tmp/sa1] [--big /tmp/sa4] [--chunk 512] [--years 2016 2017]

1. Halo: whole-image prediction of one year's composite vs the chunked mosaic for halos 0..160 px;
   prints the worst difference (x255) over the image and inside a `halo` margin.
2. Throughput: `probability_cube` computed on a LocalCluster (1 worker process, 2 threads; the
   worker's torch uses 1 thread per task, as distributed sets OMP_NUM_THREADS=1), reading the COGs
   included, vs the bare network (`TorchPredictor.predict`, torch on 2 threads) over the same
   tiles (with their halos) already in memory. Target: pipeline >= 0.8x bare.
3. With --big (a size=4 area): 1 vs 2 workers (skipped when the folder has no synthetic.json).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def _cfg(area: Path, years):
    from pipeline.config import load_config

    spec = json.loads((area / "synthetic.json").read_text())
    return load_config(None, synthetic={"path": str(area)}, region={"bbox": spec["bbox"]}, years={"start": years[0], "end": years[-1]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="/tmp/train_unet16/sentinel-2/sentinel-2-unet.safetensors")
    ap.add_argument("--area", default="/tmp/sa1")
    ap.add_argument("--big", default="/tmp/sa4")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--years", type=int, nargs="+", default=[2016, 2017])
    ap.add_argument("--halos", type=int, nargs="+", default=[0, 16, 32, 48, 64, 80, 96, 112, 128, 160])
    ap.add_argument("--skip-halo", action="store_true")
    args = ap.parse_args()

    import logging

    import dask
    import torch

    logging.getLogger("distributed.scheduler").setLevel(logging.ERROR)  # re-submitting the same keys warns
    from distributed import Client, LocalCluster

    from pipeline import inference
    from pipeline.model.predictor import TorchPredictor
    from pipeline.model.weights import load_model
    from pipeline.yearly_cube import yearly_cube

    cfg = _cfg(Path(args.area), args.years)
    lazy = yearly_cube(cfg, "sentinel-2", years=args.years, chunks=args.chunk)
    t = time.perf_counter()
    cube = lazy.compute(scheduler="threads")
    print(f"cube {dict(cube.sizes)} read in {time.perf_counter() - t:.1f} s")
    model, card = load_model(args.weights)
    predictor = TorchPredictor(model, card.recipe, "cpu")
    terrain = {n: cube[n].values for n in card.recipe.terrain}
    halo_default = inference.HALO_BY_ARCHITECTURE[card.architecture]

    if not args.skip_halo:
        torch.set_num_threads(2)
        whole = predictor.predict(cube.reflectance.values[0], terrain)
        print(f"halo ({card.architecture} base {card.base}, {args.years[0]}, chunk {args.chunk}): worst |mosaic - whole| x255")
        for halo in args.halos:
            mosaic = inference.probability_cube(
                cube.isel(year=[0]).chunk({"y": args.chunk, "x": args.chunk}), args.weights, halo, device="cpu"
            ).compute(scheduler="sync").values[0]
            d = np.abs(mosaic - whole)
            m = inference._round_up(halo)
            inner = d[m : d.shape[0] - m, m : d.shape[1] - m]
            print(f"  halo {halo:4d}: whole image {255 * d.max():7.3f}  inside margin {255 * inner.max():7.3f}", flush=True)

    # throughput. distributed's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also
    # freezes glibc's mmap threshold: every large torch activation is then mmapped and page-faulted
    # afresh (measured: inference 2.3x slower). Measured with the default and with it removed.
    prob = inference.probability_cube(lazy, args.weights, halo_default, device="cpu", chunk=args.chunk)
    n_px = prob.size
    default_env = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    no_trim_env = {k: v for k, v in default_env.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    timings = {}
    for label, env in (("nanny default env", default_env), ("no MALLOC_TRIM_THRESHOLD_", no_trim_env)):
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # a nanny leaves its pre-spawn env in this process too
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
                prob.sum().compute()  # warm: worker imports torch and loads the model once
                t = time.perf_counter()
                prob.sum().compute()
                pipeline_s = time.perf_counter() - t
                # the same graph on inputs already in the worker's memory: Dask's own cost, no COG reads
                resident = cube.chunk({"y": args.chunk, "x": args.chunk}).persist()
                prob_mem = inference.probability_cube(resident, args.weights, halo_default, device="cpu", chunk=args.chunk)
                prob_mem.sum().compute()
                t = time.perf_counter()
                prob_mem.sum().compute()
                resident_s = time.perf_counter() - t
                loads = client.run(lambda: __import__("pipeline.inference").inference._load_predictor.cache_info().misses)
        timings[label] = (pipeline_s, resident_s)
        print(f"[{label}] pipeline 1 worker x 2 threads: reads included {pipeline_s:.2f} s ({n_px / pipeline_s / 1e6:.3f} Mpx/s), "
              f"inputs resident {resident_s:.2f} s ({n_px / resident_s / 1e6:.3f} Mpx/s); model loads per worker {loads}")

    # bare: the same tiles with their halos, in memory, torch on 2 threads
    torch.set_num_threads(2)
    ychunks = inference._lattice_chunks(cube.sizes["y"], max(inference._round_up(args.chunk), inference._round_up(halo_default)), inference._round_up(halo_default))
    xchunks = inference._lattice_chunks(cube.sizes["x"], max(inference._round_up(args.chunk), inference._round_up(halo_default)), inference._round_up(halo_default))
    h = inference._round_up(halo_default)
    tiles = []
    y0 = 0
    for cy in ychunks:
        x0 = 0
        for cx in xchunks:
            ys = slice(max(y0 - h, 0), y0 + cy + h)
            xs = slice(max(x0 - h, 0), x0 + cx + h)
            for i in range(cube.sizes["year"]):
                tiles.append((np.ascontiguousarray(cube.reflectance.values[i][:, ys, xs]), {n: np.ascontiguousarray(v[ys, xs]) for n, v in terrain.items()}))
            x0 += cx
        y0 += cy
    predictor.predict(*tiles[0])
    t = time.perf_counter()
    for r, tr in tiles:
        predictor.predict(r, tr)
    bare_s = time.perf_counter() - t
    print(f"bare forward (torch 2 threads, {len(tiles)} tiles in memory): {bare_s:.2f} s, {n_px / bare_s / 1e6:.3f} Mpx/s")
    for label, (pipeline_s, resident_s) in timings.items():
        print(f"ratio pipeline / bare throughput [{label}]: reads included {bare_s / pipeline_s:.2f}x, "
              f"inputs resident {bare_s / resident_s:.2f}x (target >= 0.8)")

    big = Path(args.big)
    if not (big / "synthetic.json").is_file():
        print(f"{big} has no synthetic.json: 1 vs 2 workers skipped")
        return
    big_lazy = yearly_cube(_cfg(big, args.years[:1]), "sentinel-2", years=args.years[:1], chunks=args.chunk)
    big_prob = inference.probability_cube(big_lazy, args.weights, halo_default, device="cpu", chunk=args.chunk)
    times = {}
    for workers in (1, 2):
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": no_trim_env}), LocalCluster(n_workers=workers, threads_per_worker=2, processes=True, dashboard_address=None) as cluster, Client(cluster):
            big_prob[:, :64, :64].sum().compute()
            t = time.perf_counter()
            big_prob.sum().compute()
            times[workers] = time.perf_counter() - t
        print(f"size=4 area, {workers} worker(s) x 2 threads: {times[workers]:.1f} s")
    print(f"speed-up 2 vs 1 workers: {times[1] / times[2]:.2f}x")
    dask.config.refresh()


if __name__ == "__main__":
    main()
