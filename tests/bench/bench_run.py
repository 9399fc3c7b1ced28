"""End to end: `run_study` on a generated study area, time per stage and per-worker peak memory.

    .venv/bin/python tests/bench/bench_run.py --area /tmp/sa1 [--years 2016 2022] [--weights W] [--landsat-weights W]
        [--workers N --threads-per-worker T] [--out DIR] [--json OUT.json]

Runs the whole study (search, composite, D-UNet inference into the store, statistics, report,
STAC catalog of outputs) on a local cluster started by `pipeline.scale.cluster.start_cluster`, i.e. the
production path (default: the machine split the way `glacierwatch run` splits it). Call it once
per area, each in a fresh process (tests/bench/run_all.py does), so one run's memory does not
carry into the next.

Memory: the resident set size of every process below this one (the nannies' worker processes) is
polled every 0.1 s with psutil; the figure per worker is its peak, and a worker restarted by its
nanny counts as a new process. The largest per-process peak is reported, with each worker's idle
RSS (after start-up, before the run) for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


class RssPoller:
    """Peak RSS (bytes) of every descendant process of this one, polled in a thread."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self._me = psutil.Process()
        self.interval = interval
        self.peak: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.main_peak = 0
        self.samples: list[tuple[float, int]] = []  # (perf_counter, largest child RSS): which stage holds the peak
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _poll(self) -> None:
        import psutil

        self.main_peak = max(self.main_peak, self._me.memory_info().rss)
        largest = 0
        for child in self._me.children(recursive=True):
            try:
                rss = child.memory_info().rss
                if child.pid not in self.names:
                    self.names[child.pid] = " ".join(child.cmdline()[-3:])[:80]
            except psutil.Error:
                continue
            self.peak[child.pid] = max(self.peak.get(child.pid, 0), rss)
            largest = max(largest, rss)
        self.samples.append((time.perf_counter(), largest))

    def peak_between(self, start: float, end: float) -> int:
        """The largest child RSS sampled in [start, end]."""
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            time.sleep(self.interval)

    def __enter__(self) -> RssPoller:
        self._poll()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()


def _config(area: Path, years: list[int], weights: dict[str, str], half: bool | None = None):
    from pipeline.config import load_config

    meta = json.loads((area / "synthetic.json").read_text())
    sensors = {"sentinel-2": {"resolution": 10, "weights": weights["sentinel-2"]}}
    if "landsat" in weights:
        sensors["landsat"] = {"resolution": 30, "weights": weights["landsat"]}
    return load_config(
        None,
        synthetic={"path": str(area), "size": meta["spec"]["size"]},
        region={"bbox": meta["bbox"]},
        years={"start": years[0], "end": years[-1]},
        sensors=sensors,
        inference={"half": half},
    )


def _jemalloc_mapped() -> bool:
    """In a worker: whether it runs on jemalloc (cluster.local.allocator)."""
    with open("/proc/self/maps") as maps:
        return "jemalloc" in maps.read()


def main(argv: list[str] | None = None) -> dict:
    from pipeline.config import SHIPPED_WEIGHTS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--area", type=Path, required=True, help="a generated study area (glacierwatch synth)")
    ap.add_argument("--years", type=int, nargs=2, default=None, metavar=("FIRST", "LAST"), help="default: the area's years")
    ap.add_argument("--weights", default=str(SHIPPED_WEIGHTS / "sentinel-2.safetensors"))
    ap.add_argument("--landsat-weights", default=None, help="also run Landsat with these weights")
    ap.add_argument("--workers", type=int, default=None, help="default: as `glacierwatch run` on this machine")
    ap.add_argument("--threads-per-worker", type=int, default=None)
    ap.add_argument("--allocator", choices=["system", "jemalloc", "auto"], default="system",
                    help="cluster.local.allocator: the inference workers' malloc (auto: jemalloc where installed)")
    ap.add_argument("--half", action="store_true", help="inference.half: true (bf16 on a CPU with bf16 instructions)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (replaced); default: a temporary one, removed")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from rich.console import Console

    from pipeline.run import run_study
    from pipeline.scale.cluster import ClusterSpec, LocalSpec, start_cluster

    meta = json.loads((args.area / "synthetic.json").read_text())
    years = list(range(args.years[0], args.years[1] + 1)) if args.years else list(meta["spec"]["years"])
    weights = {"sentinel-2": args.weights}
    if args.landsat_weights:
        weights["landsat"] = args.landsat_weights
    for sensor, path in weights.items():
        if not Path(path).is_file():
            raise SystemExit(f"no {sensor} weights at {path}: pass --weights / --landsat-weights")
    cfg = _config(args.area, years, weights, True if args.half else None)
    out = args.out or Path(os.environ.get("TMPDIR", "/tmp")) / f"glacierwatch-bench-run-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log_path = out.with_name(out.name + ".log")
    spec = ClusterSpec(kind="local", local=LocalSpec(workers=args.workers, threads_per_worker=args.threads_per_worker,
                                                          dashboard_address=":0", allocator=args.allocator))
    result: dict = {"area": str(args.area), "size": meta["spec"]["size"], "years": years, "sensors": list(weights),
                    "grid": {s: list(cfg.grid(s).shape) for s in weights}, "log": str(log_path)}
    with open(log_path, "w") as log, RssPoller() as poller:
        console = Console(file=log, width=120)
        started = time.perf_counter()
        with start_cluster(spec, console=console) as client:
            info = client.scheduler_info()["workers"]
            result["cluster"] = {"workers": len(info), "threads_per_worker": max(w["nthreads"] for w in info.values()),
                                 "memory_limit_per_worker": max(w["memory_limit"] for w in info.values()),
                                 "allocator": "jemalloc" if any(client.run(_jemalloc_mapped).values()) else "system",
                                 "gpu_workers": sum(bool((w.get("resources") or {}).get("GPU")) for w in info.values())}
            cluster_s = time.perf_counter() - started
            worker_pids = set(client.run(os.getpid).values())
            idle = {pid: poller.peak.get(pid, 0) for pid in worker_pids}
            t = time.perf_counter()
            # the cluster was started for this run, as `glacierwatch run` starts its own: its workers are restarted alike
            run = run_study(cfg, out, client=client, console=console, restart_workers=True)
            wall = time.perf_counter() - t
            worker_pids |= set(client.run(os.getpid).values())  # restarted workers included
    workers_peak = {pid: poller.peak.get(pid, 0) for pid in worker_pids}
    by_stage, edge = {}, t  # the stages ran one after another, in the order timings lists them
    for stage, seconds in run.timings.items():
        by_stage[stage] = poller.peak_between(edge, edge + seconds) / 2**20
        edge += seconds
    others = {pid: rss for pid, rss in poller.peak.items() if pid not in worker_pids}
    result.update(
        cluster_start_s=cluster_s,
        wall_s=wall,
        timings=run.timings,
        worker_peak_rss_mb=max(workers_peak.values()) / 2**20,
        worker_peak_rss_mb_each={str(pid): v / 2**20 for pid, v in workers_peak.items()},
        worker_peak_rss_mb_by_stage=by_stage,
        worker_idle_rss_mb={str(pid): v / 2**20 for pid, v in idle.items()},
        worker_restarts=len(worker_pids) - result["cluster"]["workers"],
        other_children_peak_mb=max(others.values(), default=0) / 2**20,
        main_process_peak_mb=poller.main_peak / 2**20,
        tables={name: len(df) for name, df in run.tables.items()},
        # the science at this size: the run's numbers against the generator's own parameters
        generator_check=run.tables["generator_check"].to_dict("records") if "generator_check" in run.tables else [],
    )
    print(f"{args.area.name}: grid {result['grid']}, {len(years)} years, {result['cluster']['workers']} workers x "
          f"{result['cluster']['threads_per_worker']} threads ({result['cluster']['gpu_workers']} on a GPU, inference on "
          f"{result['cluster']['allocator']}): run_study {wall:.1f} s")
    for stage, seconds in run.timings.items():
        print(f"  {stage:40s} {seconds:8.1f} s   largest worker RSS {by_stage[stage]:7.0f} MB")
    print(f"  peak RSS per worker {result['worker_peak_rss_mb']:.0f} MB (idle {max(idle.values(), default=0) / 2**20:.0f} MB), "
          f"main process {result['main_process_peak_mb']:.0f} MB")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
