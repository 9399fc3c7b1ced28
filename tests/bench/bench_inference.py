"""Chunked inference: the halo the trained model needs, and Dask pipeline throughput vs bare forward.

    .venv/bin/python tests/bench/bench_inference.py [--weights W.safetensors] [--area /tmp/sa1] [--big /tmp/sa4]
        [--chunk 512] [--years 2016 2017] [--skip-halo | --halo-only] [--sensor sentinel-2|landsat]
        [--envs both|production] [--scaling-threads 2] [--json OUT.json]

`--weights` defaults to the shipped Sentinel-2 network (pipeline/weights/); with `--sensor landsat`
pass the Landsat weights (the composite read is that sensor's).

1. Halo: whole-image prediction of one year's composite vs the chunked mosaic for halos 0..160 px;
   prints the worst difference (x255) over the image and inside a `halo` margin.
2. Throughput: `probability_cube` computed on a LocalCluster (1 worker process, 2 threads; the
   worker's torch uses 1 thread per task, as distributed sets OMP_NUM_THREADS=1), reading the COGs
   included, vs the bare network (`TorchPredictor.predict`, torch on 2 threads) over the same
   tiles (with their halos) already in memory. Target: pipeline >= 0.8x bare. Measured with
   distributed's default worker environment and without MALLOC_TRIM_THRESHOLD_ (what
   pipeline.scale.cluster.start_cluster uses); `--envs production` measures only the latter.
3. With --big (a size=4 area): one year on 1 vs 2 workers of `--scaling-threads` threads each
   (skipped when the folder has no synthetic.json). On a 2-core machine use --scaling-threads 1:
   two workers of two threads have no second pair of cores to run on. Also records how many cores
   the worker processes kept busy (their CPU seconds / wall): a worker of one Dask thread still
   reads COGs in its read pool (catalog.reads) beside its forward, so it uses more than one core,
   and the speed-up two workers can reach on n cores is n / that.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def default_weights() -> Path:
    from pipeline.config import SHIPPED_WEIGHTS

    return SHIPPED_WEIGHTS / "sentinel-2.safetensors"


def _cpu_seconds() -> float:
    """This process's CPU time (user + system, all threads): a worker's, through `Client.run`."""
    import psutil

    cpu = psutil.Process().cpu_times()
    return cpu.user + cpu.system


def _cfg(area: Path, years):
    from pipeline.config import load_config

    spec = json.loads((area / "synthetic.json").read_text())
    return load_config(
        None,
        synthetic={"path": str(area), "size": spec["spec"]["size"]},
        region={"bbox": spec["bbox"]},
        years={"start": years[0], "end": years[-1]},
    )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="default: the shipped Sentinel-2 D-UNet")
    ap.add_argument("--area", default="/tmp/sa1")
    ap.add_argument("--big", default="/tmp/sa4")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--years", type=int, nargs="+", default=[2016, 2017])
    ap.add_argument("--halos", type=int, nargs="+", default=[0, 16, 32, 48, 64, 80, 96, 112, 128, 160])
    ap.add_argument("--skip-halo", action="store_true")
    ap.add_argument("--halo-only", action="store_true", help="measure the halo and stop (no throughput part)")
    ap.add_argument("--sensor", default="sentinel-2", help="whose composite the networks read (the weights must match it)")
    ap.add_argument("--envs", choices=("both", "production"), default="both")
    ap.add_argument("--threads", type=int, default=2, help="threads of the throughput worker and of bare torch")
    ap.add_argument("--scaling-threads", type=int, default=2, help="threads per worker in the 1 vs 2 workers run")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args(argv)
    weights = str(args.weights or default_weights())
    if not Path(weights).is_file():
        raise SystemExit(f"no weights at {weights}: pass --weights (a .safetensors file with its .json card beside it)")

    import logging

    import dask
    import torch

    logging.getLogger("distributed.scheduler").setLevel(logging.ERROR)  # re-submitting the same keys warns
    from distributed import Client, LocalCluster

    from catalog.halo_layout import regular_chunks
    from pipeline.inference import region as inference
    from pipeline.inference.yearly_cube import yearly_cube
    from pipeline.model.predictor import TorchPredictor
    from pipeline.model.weights import load_model

    result: dict = {"weights": weights, "chunk": args.chunk, "years": args.years, "threads": args.threads}
    cfg = _cfg(Path(args.area), args.years)
    lazy = yearly_cube(cfg, args.sensor, years=args.years, chunks=args.chunk)
    t = time.perf_counter()
    cube = lazy.compute(scheduler="threads")
    result["cube_read_s"] = time.perf_counter() - t
    print(f"cube {dict(cube.sizes)} read in {result['cube_read_s']:.1f} s")
    model, card = load_model(weights)
    predictor = TorchPredictor(model, card.recipe, "cpu")
    terrain = {n: cube[n].values for n in card.recipe.terrain_sources}  # the layers the recipe derives its channels from
    halo_default = card.halo_px if card.halo_px is not None else inference.HALO_BY_ARCHITECTURE[card.architecture]
    result.update(architecture=card.architecture, base=card.base, halo=halo_default)

    if not args.skip_halo:
        torch.set_num_threads(args.threads)
        whole = predictor.predict(cube.reflectance.values[0], terrain)
        print(f"halo ({card.architecture} base {card.base}, {args.years[0]}, chunk {args.chunk}): worst |mosaic - whole| x255")
        result["halo_check"] = []
        for halo in args.halos:
            mosaic = inference.probability_cube(
                cube.isel(year=[0]).chunk({"y": args.chunk, "x": args.chunk}), weights, halo, device="cpu"
            ).compute(scheduler="sync").values[0]
            d = np.abs(mosaic - whole)
            m = inference.round_up(halo)
            inner = d[m : d.shape[0] - m, m : d.shape[1] - m]
            result["halo_check"].append({"halo": halo, "whole_x255": float(255 * d.max()), "inner_x255": float(255 * inner.max())})
            print(f"  halo {halo:4d}: whole image {255 * d.max():7.3f}  inside margin {255 * inner.max():7.3f}", flush=True)
    if args.halo_only:
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return result

    # throughput. distributed's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also
    # freezes glibc's mmap threshold: every large torch activation is then mmapped and page-faulted
    # afresh (measured: inference 2.3x slower). Measured with the default and with it removed.
    # as `infer_to_store` reads it: each tile composited with its own halo (catalog.halo_layout)
    halo_run = inference.forward_halo(card, halo_default)
    lazy_run = yearly_cube(cfg, args.sensor, years=args.years, chunks=args.chunk, halo=halo_run)
    prob = inference.probability_cube(lazy_run, weights, halo_default, device="cpu", chunk=args.chunk)
    n_px = prob.size
    result["output_px"] = int(n_px)
    default_env = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    no_trim_env = {k: v for k, v in default_env.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    envs = [("no MALLOC_TRIM_THRESHOLD_", no_trim_env)]
    if args.envs == "both":
        envs.insert(0, ("nanny default env", default_env))
    timings = {}
    for label, env in envs:
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # a nanny leaves its pre-spawn env in this process too
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            with LocalCluster(n_workers=1, threads_per_worker=args.threads, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
                prob[:, :64, :64].sum().compute()  # warm: the worker imports torch and loads the model once
                t = time.perf_counter()
                prob.sum().compute()
                pipeline_s = time.perf_counter() - t
                # the same graph on inputs already in the worker's memory: Dask's own cost, no COG reads
                resident = cube.chunk({"y": args.chunk, "x": args.chunk}).persist()
                prob_mem = inference.probability_cube(resident, weights, halo_default, device="cpu", chunk=args.chunk)
                prob_mem[:, :64, :64].sum().compute()
                t = time.perf_counter()
                prob_mem.sum().compute()
                resident_s = time.perf_counter() - t
                loads = client.run(lambda: __import__("pipeline.inference.predictor_cache").inference.predictor_cache.load_predictor.cache_info().misses)
        timings[label] = (pipeline_s, resident_s)
        print(f"[{label}] pipeline 1 worker x {args.threads} threads: reads included {pipeline_s:.2f} s ({n_px / pipeline_s / 1e6:.3f} Mpx/s), "
              f"inputs resident {resident_s:.2f} s ({n_px / resident_s / 1e6:.3f} Mpx/s); model loads per worker {loads}")

    # bare: the same tiles with their halos, in memory, torch on `threads` threads
    torch.set_num_threads(args.threads)
    h = inference.round_up(halo_default)
    tile = max(inference.round_up(args.chunk), h)
    ychunks = regular_chunks(cube.sizes["y"], tile)
    xchunks = regular_chunks(cube.sizes["x"], tile)
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
    network_px = int(sum(r.shape[1] * r.shape[2] for r, _ in tiles))
    result.update(bare_s=bare_s, tiles=len(tiles), network_px=network_px)
    print(f"bare forward (torch {args.threads} threads, {len(tiles)} tiles in memory, {network_px / 1e6:.1f} Mpx with halos): "
          f"{bare_s:.2f} s, {n_px / bare_s / 1e6:.3f} Mpx/s of output")
    result["pipeline"] = {}
    for label, (pipeline_s, resident_s) in timings.items():
        key = "production" if label.startswith("no MALLOC") else "nanny_default"
        result["pipeline"][key] = {"label": label, "reads_included_s": pipeline_s, "resident_s": resident_s,
                                   "ratio_reads_included": bare_s / pipeline_s, "ratio_resident": bare_s / resident_s}
        print(f"ratio pipeline / bare throughput [{label}]: reads included {bare_s / pipeline_s:.2f}x, "
              f"inputs resident {bare_s / resident_s:.2f}x (target >= 0.8)")

    big = Path(args.big)
    if not (big / "synthetic.json").is_file():
        print(f"{big} has no synthetic.json: 1 vs 2 workers skipped")
    else:
        big_lazy = yearly_cube(_cfg(big, args.years[:1]), "sentinel-2", years=args.years[:1], chunks=args.chunk, halo=halo_run)
        big_prob = inference.probability_cube(big_lazy, weights, halo_default, device="cpu", chunk=args.chunk)
        times, busy = {}, {}
        for workers in (1, 2):
            os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
            with dask.config.set({"distributed.nanny.pre-spawn-environ": no_trim_env}), LocalCluster(
                n_workers=workers, threads_per_worker=args.scaling_threads, processes=True, dashboard_address=None
            ) as cluster, Client(cluster) as client:
                client.run(lambda: __import__("pipeline.inference.region"))  # every worker imports torch before the clock
                big_prob[:, :64, :64].sum().compute()
                before = client.run(_cpu_seconds)
                t = time.perf_counter()
                big_prob.sum().compute()
                times[workers] = time.perf_counter() - t
                after = client.run(_cpu_seconds)
                busy[workers] = sum(after[w] - before[w] for w in after) / times[workers]
            print(f"big area ({big.name}, {dict(big_lazy.sizes)}), {workers} worker(s) x {args.scaling_threads} threads: "
                  f"{times[workers]:.1f} s, worker processes busy {busy[workers]:.2f} cores")
        print(f"speed-up 2 vs 1 workers: {times[1] / times[2]:.2f}x (at most {len(os.sched_getaffinity(0)) / busy[1]:.2f}x on "
              f"{len(os.sched_getaffinity(0))} cores: one worker already keeps {busy[1]:.2f} busy)")
        result["scaling"] = {"area": str(big), "threads_per_worker": args.scaling_threads, "output_px": int(big_prob.size),
                             "one_worker_s": times[1], "two_workers_s": times[2], "speedup": times[1] / times[2],
                             "one_worker_cores_busy": busy[1], "two_workers_cores_busy": busy[2]}
        dask.config.refresh()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
