"""Wall time of a run whose COG reads fail now and then, against a clean run (issue target: within 2x).

    python tests/integration/bench_faults.py [--rate 0.1] [--seed 20260] [--stall 1.0] [--area DIR]
                                             [--retry-delay S] [--read-threads 1,8] [--gdal KEY=VALUE ...] [--quick]

Stands up the integration stack (tests/integration/stack.py: pgstac + stac-fastapi-pgstac,
nginx) and the fault proxy, then runs the quarter-size study (2020-2021, tiny random networks)
through the STAC API: once straight from nginx, once through the proxy injecting nothing (the
baseline, after a warm-up run), then with `--rate` of the range requests failing during the
reads (all kinds; 503s and resets only; stalls only) and during the whole run (scene check
included). Each run starts from a cold GDAL HTTP cache and is compared with the first
baseline's outputs; each row also counts the HTTP requests the proxy saw (all, and with a Range).
Not collected by pytest (not a test_*.py file).

`--read-threads 1,8` repeats the baseline and the scenarios for each count of concurrent asset
reads per worker (GLACIERWATCH_READ_THREADS, catalog/cube.py; 1 = one after another, as before
issue 17), in one run, so before and after share the machine's state. `--retry-delay S` replaces
GDAL_HTTP_RETRY_DELAY (catalog/gdal_env.py) for this process only, to see what the delay costs;
`--gdal KEY=VALUE` adds a GDAL setting to every read the same way; `--quick` runs only the
baseline and the all-kinds read scenario.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

import pytest  # noqa: E402  (pytest.MonkeyPatch for the read-time fault seam)

from integration.conftest import assert_same_outputs, faults_after_the_scene_check, run, study_config  # noqa: E402
from integration.fault_proxy import FaultPlan, FaultProxy  # noqa: E402
from integration.stack import private_catalog  # noqa: E402


def _outcome(baseline, timed) -> str:
    skipped = len({s["item_id"] for v in timed.result.provenance["skipped_scenes"].values() for s in v})
    try:
        assert_same_outputs(baseline.result, timed.result)
        same = "same outputs"
    except AssertionError:
        same = "DIFFERENT outputs"
    return f"{same}, {skipped} scenes skipped"


def _requests(stats) -> str:
    return f"{stats['requests']} requests ({stats['range_requests']} ranged)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=20260)
    parser.add_argument("--stall", type=float, default=1.0, help="seconds a stalled request is held")
    parser.add_argument("--area", type=Path, help="a generated quarter-size area (default: generate one in a temp dir)")
    parser.add_argument("--retry-delay", type=float, help="GDAL_HTTP_RETRY_DELAY in s (default: catalog/gdal_env.py's)")
    parser.add_argument("--read-threads", default=None,
                        help="comma-separated counts of concurrent reads per worker (default: 1 and the default)")
    parser.add_argument("--gdal", action="append", default=[], metavar="KEY=VALUE", help="a GDAL setting for every read")
    parser.add_argument("--quick", action="store_true", help="baseline and faults in the reads (all kinds) only")
    args = parser.parse_args()

    import catalog.gdal_env
    from catalog.gdal_env import HTTP_RETRY_DELAY_S
    from catalog.reads import DEFAULT_READ_THREADS, READ_THREADS_VAR

    retry_delay = HTTP_RETRY_DELAY_S if args.retry_delay is None else args.retry_delay
    extra = dict(kv.split("=", 1) for kv in args.gdal)
    if args.retry_delay is not None:
        extra["GDAL_HTTP_RETRY_DELAY"] = args.retry_delay
    if extra:  # scene_read_env reads the module global at call time; _layered caches what it built from it
        catalog.gdal_env.SCENE_READ_ENV = catalog.gdal_env.SCENE_READ_ENV.updated(always=extra)
        catalog.gdal_env._layered.cache_clear()
    thread_counts = [int(t) for t in (args.read_threads or f"1,{DEFAULT_READ_THREADS}").split(",")]

    from conftest import tiny_weights
    from distributed import Client, LocalCluster

    from catalog.synthetic import StudyAreaSpec, generate_study_area

    with tempfile.TemporaryDirectory(prefix="glacierwatch-bench-faults-") as tmp:
        tmp = Path(tmp)
        area = generate_study_area(args.area or tmp / "area", StudyAreaSpec(size=0.25))
        weights = {s: tiny_weights(s, tmp / f"{s}.safetensors", seed=i) for i, s in enumerate(("sentinel-2", "landsat"))}
        rows: list[tuple[str, float | None, float | None, str]] = []
        with (
            private_catalog(area.root, tmp / "stack") as stack,
            FaultProxy(stack.nginx.port, tmp / "proxy", reaper=stack.reaper) as proxy,
            LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
            Client(cluster) as client,
        ):
            direct = study_config(area, weights, tmp / "direct", provider="earth-search", url=stack.publish("direct", stack.nginx.url))
            proxied = study_config(area, weights, tmp / "proxied", provider="earth-search", url=stack.publish("proxied", proxy.url))
            run(proxied, tmp / "warm-up", client)  # imports, model loading, first-call costs
            if not args.quick:
                proxy.configure(FaultPlan())
                timed = run(direct, tmp / "direct-run", client)
                rows.append(("straight from nginx (no proxy)", timed.seconds, None, ""))

            scenarios = {
                "in the reads: 503, resets, stalls": ("503", "reset", "stall"),
                "in the reads: 503 and resets only": ("503", "reset"),
                "in the reads: stalls only": ("stall",),
            }
            if args.quick:
                scenarios = dict(list(scenarios.items())[:1])
            reference = None  # the first clean run: every run's outputs must equal it
            for threads in thread_counts:
                os.environ[READ_THREADS_VAR] = str(threads)  # read when the cubes are built, in this process
                label = f"[{threads} read{'s' if threads > 1 else ''}]"
                proxy.configure(FaultPlan())
                baseline = run(proxied, tmp / f"clean-{threads}", client)
                reference = reference or baseline
                clean = _requests(proxy.stats())
                rows.append((f"{label} through the proxy, no faults (baseline)", baseline.seconds, baseline.seconds,
                             f"{clean}; {_outcome(reference, baseline)}"))
                for i, (name, kinds) in enumerate(scenarios.items()):
                    plan = FaultPlan(rate=args.rate, seed=args.seed, kinds=kinds, stall_s=args.stall)
                    proxy.configure(FaultPlan())  # counts restart: the previous run's requests are not this one's
                    with pytest.MonkeyPatch.context() as mp, faults_after_the_scene_check(mp, proxy, plan) as injected:
                        timed = run(proxied, tmp / f"reads-{threads}-{i}", client)
                    counts = ", ".join(f"{injected[k]} {k}" for k in kinds)
                    rows.append((f"{label} {args.rate:.0%} {name}", timed.seconds, baseline.seconds,
                                 f"{counts}; {_requests(injected)}; {_outcome(reference, timed)}"))

                if not args.quick:
                    proxy.configure(FaultPlan(rate=args.rate, seed=args.seed, stall_s=args.stall))
                    try:
                        timed = run(proxied, tmp / f"anywhere-{threads}", client)
                        outcome = _outcome(reference, timed)
                        seconds = timed.seconds
                    except Exception as err:  # the run itself failing is an outcome worth a row
                        outcome, seconds = f"run failed: {type(err).__name__}: {str(err)[:160]}", None
                        traceback.print_exc(limit=1)
                    injected = proxy.stats()
                    proxy.configure(FaultPlan())
                    counts = ", ".join(f"{injected[k]} {k}" for k in ("503", "reset", "stall"))
                    rows.append((f"{label} {args.rate:.0%} anywhere (scene check included)", seconds, baseline.seconds,
                                 f"{counts}; {_requests(injected)}; {outcome}"))

        print(f"\nquarter-size area, 2020-2021, both sensors, 1 worker x 2 threads; seed {args.seed}, stalls {args.stall} s, "
              f"GDAL_HTTP_RETRY_DELAY {retry_delay} s; extra GDAL settings {extra or 'none'}; "
              f"[n reads] = {READ_THREADS_VAR}; x = against the clean run with as many reads, "
              f"x first = against the first clean run ({reference.seconds:.1f} s)")
        for name, seconds, clean_s, note in rows:
            wall = (f"{seconds:6.1f} s  {seconds / clean_s:4.2f} x  {seconds / reference.seconds:4.2f} x first"
                    if seconds is not None and clean_s else f"{seconds or 0:6.1f} s" + " " * 22)
            print(f"{name:58s} {wall}  {note}")


if __name__ == "__main__":
    main()
