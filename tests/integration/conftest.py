"""Fixtures of the integration suite: the private catalog on loopback, the fault proxy, runs through them.

Everything is session-scoped and started once: the services (tests/integration/stack.py), the
proxy in front of nginx (tests/integration/fault_proxy.py), and three reference runs of the
same study (the quarter-size area, 2020-2021, tiny random networks: tests/conftest.py's
`small_run`, shared with the rest of the suite): on the catalog on disk (`small_run` itself),
through the STAC API with COGs from nginx, and through the STAC API with COGs through the proxy
injecting nothing. A test that injects faults compares its run with the last one.

No run may hang the suite: each is guarded by faulthandler (RUN_TIMEOUT_S), which dumps every
thread's stack and ends the process; the watchdog of tests/integration/stack.py then stops the
services.

Runs in one process share GDAL's /vsicurl/ cache (headers and blocks, keyed by URL), so every
run here starts by clearing it: a run must fetch what it reads, or the faults meant for it
would land on nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import small_run_config
from rich.console import Console

from integration.fault_proxy import FaultPlan, FaultProxy
from integration.stack import StackUnavailable, ensure_installed, private_catalog

RUN_TIMEOUT_S = 300
"""A run takes ~15-50 s here (2 cores); one that takes this long is stuck (e.g. a read that never returns)."""
HANG_REPORT_FD: list[int] = []
"""Where a stuck run's stacks go: a copy of the terminal's stderr taken past pytest's capture (see `run`)."""
TIMINGS: dict[str, str] = {}
"""Lines for the terminal summary (wall times of the clean and faulty runs)."""


# ---------------------------------------------------------------------------------------------
# helpers


def clear_gdal_http_cache() -> None:
    """Forget what GDAL's /vsicurl/ has cached in this process (VSICurlClearCache of the loaded libgdal)."""
    import rasterio  # noqa: F401  (loads libgdal)

    with open("/proc/self/maps") as maps:
        libraries = {line.split()[-1] for line in maps if "/libgdal" in line}
    if not libraries:
        raise RuntimeError("libgdal is not mapped in this process: cannot clear GDAL's HTTP cache")
    for library in libraries:
        ctypes.CDLL(library).VSICurlClearCache()


def study_config(area, weights: dict[str, Path], folder: Path, *, provider: str, url: str):
    """`small_run`'s study (tests/conftest.py), every sensor and the DEM searched at `url` with `provider`'s profile."""
    source = {"provider": provider, "url": url}
    sensors = {"sentinel-2": {"resolution": 10, "weights": str(weights["sentinel-2"]), **source},
               "landsat": {"resolution": 30, "weights": str(weights["landsat"]), **source}}
    folder.mkdir(parents=True, exist_ok=True)
    return small_run_config(area, weights, folder, sensors=sensors, dem=source)


@dataclass
class TimedRun:
    result: object  # pipeline.run.RunResult
    seconds: float


def run(cfg, folder: Path, client, sensors: list[str] | None = None) -> TimedRun:
    """`run_study` into `folder/out` (publish=False), from a cold GDAL HTTP cache, timed."""
    from pipeline.run import run_study

    clear_gdal_http_cache()
    folder.mkdir(parents=True, exist_ok=True)
    # pytest captures fd 2 into a file that an exiting process never shows: report on the terminal's copy.
    report = HANG_REPORT_FD[0] if HANG_REPORT_FD else sys.__stderr__.fileno()
    faulthandler.dump_traceback_later(RUN_TIMEOUT_S, exit=True, file=report)
    try:
        with open(folder / "log.txt", "w") as log:
            started = time.perf_counter()
            result = run_study(cfg, folder / "out", sensors=sensors, client=client,
                               console=Console(file=log, width=120), publish=False)
        return TimedRun(result, time.perf_counter() - started)
    finally:
        faulthandler.cancel_dump_traceback_later()


TRUTH_ONLY_TABLES = {"accuracy"}
"""Tables a run has only when it is given the synthetic area's truth (see `assert_same_outputs`)."""


def _sensor_rows(table: pd.DataFrame, sensors) -> pd.DataFrame:
    if "sensor" not in table.columns:
        return table
    return table[table["sensor"].isin(sensors)].reset_index(drop=True)


def assert_same_outputs(expected, actual, sensors=("sentinel-2", "landsat")) -> None:
    """Same store arrays (probability, terrain, glacier ids: exactly), same tables, same scenes.

    A run on the synthetic area's own catalog (`small_run`) also analyses the area's truth
    (pipeline.run.truth_dir_for): its tables have "truth" rows and an accuracy table, which a run
    through a STAC API has not. Tables are compared on the sensors' rows; a table only the
    expected run has must be one that needs the truth.
    """
    from pipeline.glaciers.analysis import TABLES
    from pipeline.store import RegionStore

    for sensor in sensors:
        a = RegionStore.open(expected.store_url).open_dataset(sensor)
        b = RegionStore.open(actual.store_url).open_dataset(sensor)
        assert sorted(a.data_vars) == sorted(b.data_vars)
        for name in a.data_vars:
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=f"{sensor}/{name}")
        np.testing.assert_array_equal(a["year"].values, b["year"].values)
    for name in TABLES:
        e, a = (_sensor_rows(run.tables[name], sensors) for run in (expected, actual))
        if len(a) == 0 and len(e) > 0 and name in TRUTH_ONLY_TABLES:
            continue
        if len(a) == 0 and len(e) == 0:  # no sensor rows in either (a table that also holds truth rows keeps its columns)
            continue
        pd.testing.assert_frame_equal(e, a, obj=f"table {name}")
    assert len(actual.tables["areas"]) > 0
    for sensor in sensors:
        assert expected.provenance["scenes"][sensor] == actual.provenance["scenes"][sensor]


@contextlib.contextmanager
def faults_after_the_scene_check(monkeypatch, proxy: FaultProxy, plan: FaultPlan):
    """Inject `plan` into the reads only: each sensor's scene check sees a clean network, its reads see faults.

    `yearly_cube` searches, checks every scene (`on_unreadable="skip"`) and returns the lazy cube;
    the reads happen after, when the store is written. Wrapping it is the seam between the two.
    Yields the fault counts, summed over the sensors once the block ends.
    """
    import pipeline.inference.yearly_cube

    original = pipeline.inference.yearly_cube.yearly_cube
    injected: Counter[str] = Counter()

    def checked_then_faulty(*args, **kwargs):
        injected.update(proxy.stats())
        proxy.configure(FaultPlan())
        cube = original(*args, **kwargs)
        clear_gdal_http_cache()
        proxy.configure(plan)
        return cube

    monkeypatch.setattr(pipeline.inference.yearly_cube, "yearly_cube", checked_then_faulty)
    try:
        yield injected
    finally:
        injected.update(proxy.stats())
        proxy.configure(FaultPlan())
        monkeypatch.undo()


# ---------------------------------------------------------------------------------------------
# services


@pytest.fixture(scope="session", autouse=True)
def _hang_report_fd(pytestconfig):
    """A duplicate of the terminal's stderr, for a stuck run's stack dump (faulthandler writes to an fd)."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    context = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
    with context:
        fd = os.dup(2)
    HANG_REPORT_FD.append(fd)
    yield
    HANG_REPORT_FD.remove(fd)
    os.close(fd)


@pytest.fixture(scope="session")
def stack(request, tmp_path_factory):
    """PostgreSQL + pgstac and nginx over the quarter-size area (skips, naming the package, where they cannot be had)."""
    try:
        installed = ensure_installed()
    except StackUnavailable as err:
        pytest.skip(f"integration stack unavailable: {err}")
    area = request.getfixturevalue("small_study_area")  # only once the stack can run: it takes a while
    with private_catalog(area.root, tmp_path_factory.mktemp("stack"), installed) as running:
        yield running


@pytest.fixture(scope="session")
def proxy(stack, tmp_path_factory):
    with FaultProxy(stack.nginx.port, tmp_path_factory.mktemp("proxy"), reaper=stack.reaper) as running:
        yield running


@pytest.fixture(scope="session")
def direct_api(stack) -> str:
    """A STAC API whose asset hrefs point at nginx."""
    return stack.publish("direct", stack.nginx.url)


@pytest.fixture(scope="session")
def proxied_api(stack, proxy) -> str:
    """A STAC API whose asset hrefs point at the fault proxy (in front of the same nginx)."""
    return stack.publish("proxied", proxy.url)


# ---------------------------------------------------------------------------------------------
# reference runs


@pytest.fixture(scope="session")
def local_run(small_run):
    """The study on the catalog on disk (provider `local`): tests/conftest.py's `small_run`, its RunResult."""
    _, result = small_run
    return result


@pytest.fixture(scope="session")
def api_run(direct_api, small_study_area, small_weights, run_client, tmp_path_factory) -> TimedRun:
    """The same study through stac-fastapi-pgstac (Earth Search's profile) and GDAL reading nginx."""
    folder = tmp_path_factory.mktemp("api-run")
    cfg = study_config(small_study_area, small_weights, folder, provider="earth-search", url=direct_api)
    return run(cfg, folder, run_client)


@pytest.fixture(scope="session")
def proxied_config(proxied_api, small_study_area, small_weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp("proxied-config")
    return study_config(small_study_area, small_weights, folder, provider="earth-search", url=proxied_api)


@pytest.fixture(scope="session")
def clean_run(proxied_config, proxy, run_client, tmp_path_factory) -> TimedRun:
    """The study through the proxy injecting nothing: what a faulty run must give, and its time to beat."""
    proxy.configure(FaultPlan())
    timed = run(proxied_config, tmp_path_factory.mktemp("clean-run"), run_client)
    TIMINGS["clean run through the proxy"] = f"{timed.seconds:.1f} s"
    return timed


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("glacierwatch integration: wall times")
        for name, value in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {value}")
