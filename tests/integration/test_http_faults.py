"""A network that fails now and then, and a scene that is gone: what a run does about them.

The COGs come through tests/integration/fault_proxy.py, in front of nginx. GDAL retries 503s
and reset connections (GDAL_HTTP_MAX_RETRY / GDAL_HTTP_RETRY_DELAY, catalog/gdal_env.py, which
the reader enters in the thread that reads), so a run with 10 % of its range requests failing
gives the clean run's outputs exactly. A chunk's assets are read concurrently
(catalog.reads.read_chunk), so stalls and retry delays overlap; the faulty run's wall time against
the clean run's is printed in the terminal summary (target: within 2x; not asserted: timings on
a shared machine are noise, tests/integration/bench_faults.py measures). A scene whose COG is gone is left
out before anything is computed, named in the provenance, and the year is composited from the
other scenes.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from pystac_client import Client

from catalog.reads import SceneReadError
from integration.conftest import TIMINGS, assert_same_outputs, faults_after_the_scene_check, run
from integration.fault_proxy import FaultInjector, FaultPlan

TEN_PERCENT = FaultPlan(rate=0.10, seed=20260, stall_s=1.0)


def test_fault_draws_are_deterministic_near_the_rate_and_fresh_on_retry():
    requests = [("GET", f"/c/item{i % 40}/b.tif", f"bytes={16384 * i}-{16384 * i + 16383}") for i in range(5000)]
    first = [FaultInjector(TEN_PERCENT).decide(*r) for r in requests]
    again = FaultInjector(TEN_PERCENT)
    assert [again.decide(*r) for r in requests] == first
    faults = [f for f in first if f is not None]
    assert 0.08 < len(faults) / len(requests) < 0.12
    assert set(faults) == {"503", "reset", "stall"}
    other_seed = FaultInjector(FaultPlan(rate=0.10, seed=1))
    assert [other_seed.decide(*r) for r in requests] != first
    retried = FaultInjector(FaultPlan(rate=0.5, seed=0))
    assert len({retried.decide(*requests[0]) for _ in range(20)}) > 1  # the n-th attempt draws anew
    gone = FaultInjector(FaultPlan(always_fail={"/c/item3/": 404}))
    assert gone.decide("HEAD", "/c/item3/b.tif", None) == 404 and gone.decide("GET", "/c/item4/b.tif", "bytes=0-1") is None


def _cog_url(proxy, area) -> str:
    cog = next(Path(area.root, "sentinel-2-l2a").glob("*/blue.tif"))
    return f"{proxy.url}/{cog.relative_to(area.root).as_posix()}"


def test_the_proxy_answers_503_resets_and_stalls(proxy, small_study_area):
    url = _cog_url(proxy, small_study_area)
    ranged = urllib.request.Request(url, headers={"Range": "bytes=0-99"})
    try:
        proxy.configure(FaultPlan(rate=1.0, kinds=("503",)))
        with pytest.raises(urllib.error.HTTPError, match="503"):
            urllib.request.urlopen(ranged, timeout=10)
        proxy.configure(FaultPlan(rate=1.0, kinds=("reset",)))
        with pytest.raises((ConnectionResetError, urllib.error.URLError)) as reset:
            urllib.request.urlopen(ranged, timeout=10)
        assert "reset" in str(reset.value).lower() or isinstance(reset.value, ConnectionResetError)
        proxy.configure(FaultPlan(rate=1.0, kinds=("stall",), stall_s=0.5))
        started = time.perf_counter()
        with urllib.request.urlopen(ranged, timeout=10) as response:
            assert response.status == 206 and len(response.read()) == 100
        assert time.perf_counter() - started >= 0.5
        proxy.configure(FaultPlan(always_fail={urlparse(url).path: 404}))
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url, timeout=10)
        assert proxy.stats()["always_404"] == 1
    finally:
        proxy.configure(FaultPlan())


def test_ten_percent_faults_in_the_reads_are_retried_and_change_nothing(
    proxied_config, clean_run, proxy, run_client, monkeypatch, tmp_path
):
    with faults_after_the_scene_check(monkeypatch, proxy, TEN_PERCENT) as injected:
        faulty = run(proxied_config, tmp_path, run_client)
    assert injected["503"] and injected["reset"] and injected["stall"], injected
    assert faulty.result.provenance["skipped_scenes"] == {"sentinel-2": [], "landsat": []}
    assert_same_outputs(clean_run.result, faulty.result)
    faults = sum(injected[k] for k in ("503", "reset", "stall"))
    TIMINGS["10 % faults in the reads"] = (
        f"{faulty.seconds:.1f} s = {faulty.seconds / clean_run.seconds:.2f} x the clean run "
        f"({faults} faults in {injected['range_requests']} range requests: {injected['503']} x 503, "
        f"{injected['reset']} resets, {injected['stall']} stalls of {TEN_PERCENT.stall_s} s)"
    )
    print(TIMINGS["10 % faults in the reads"])


@pytest.mark.filterwarnings("ignore:skipping scene:UserWarning")
def test_ten_percent_faults_anywhere_are_retried_and_change_nothing(proxied_config, clean_run, proxy, run_client, tmp_path):
    proxy.configure(TEN_PERCENT)
    try:
        faulty = run(proxied_config, tmp_path, run_client)
    finally:
        injected = proxy.stats()
        proxy.configure(FaultPlan())
    assert injected["503"] and injected["reset"] and injected["stall"], injected
    assert faulty.result.provenance["skipped_scenes"] == {"sentinel-2": [], "landsat": []}
    assert_same_outputs(clean_run.result, faulty.result)


def _clearest_scene(api: str, clean_run, sensor: str = "sentinel-2", year: str = "2020"):
    """The least cloudy scene the clean run used in `year`, and the URL path of its folder."""
    used = clean_run.result.provenance["scenes"][sensor][year]
    collection = Client.open(api, timeout=30).get_collection("sentinel-2-l2a")
    items = [collection.get_item(scene_id) for scene_id in used]
    item = min(items, key=lambda i: (i.properties["eo:cloud_cover"], i.id))
    folder = urlparse(item.assets["blue"].href).path.rsplit("/", 1)[0] + "/"
    return item.id, folder


def test_a_scene_whose_cog_is_gone_is_skipped_named_and_its_year_composited_from_the_others(
    stack, proxied_api, proxied_config, clean_run, proxy, run_client, tmp_path
):
    scene, folder = _clearest_scene(proxied_api, clean_run)
    without = stack.publish("without_scene", stack.nginx.url, exclude=frozenset({scene}))
    reference = run(proxied_config.model_copy(update={"sensors": {
        s: c.model_copy(update={"url": without}) for s, c in proxied_config.sensors.items()}}),
        tmp_path / "without", run_client, sensors=["sentinel-2"])

    proxy.configure(FaultPlan(always_fail={folder: 404}))
    try:
        with pytest.warns(UserWarning, match=f"skipping scene '{scene}'"):
            gone = run(proxied_config, tmp_path / "gone", run_client, sensors=["sentinel-2"])
        assert proxy.stats()["always_404"] > 0
    finally:
        proxy.configure(FaultPlan())

    skipped = gone.result.provenance["skipped_scenes"]["sentinel-2"]
    assert {s["item_id"] for s in skipped} == {scene}
    assert all(s["href"].startswith(f"{proxy.url}{folder}") and "404" in s["reason"] for s in skipped)
    used = clean_run.result.provenance["scenes"]["sentinel-2"]
    assert gone.result.provenance["scenes"]["sentinel-2"] == {"2020": [s for s in used["2020"] if s != scene],
                                                                 "2021": used["2021"]}
    # the tables say a scene of 2020 was left out (where they count it: pipeline.run.count_skipped_scenes) ...
    areas = gone.result.tables["areas"]
    if "scenes_skipped" in areas.columns:
        s2 = areas[areas["sensor"] == "sentinel-2"]
        assert {(int(y), int(n)) for y, n in zip(s2["year"], s2["scenes_skipped"])} == {(2020, 1), (2021, 0)}
        for timed in (reference, gone):
            timed.result = replace(timed.result, tables={n: t.drop(columns="scenes_skipped", errors="ignore")
                                                         for n, t in timed.result.tables.items()})
    # ... and the year is the composite of the other scenes: what a catalog without that scene gives
    assert_same_outputs(reference.result, gone.result, sensors=("sentinel-2",))
    from pipeline.store import RegionStore

    with_scene = RegionStore.open(clean_run.result.store_url).open_dataset("sentinel-2").probability
    without_scene = RegionStore.open(gone.result.store_url).open_dataset("sentinel-2").probability
    assert (with_scene.sel(year=2020).values != without_scene.sel(year=2020).values).any()  # the scene mattered
    np.testing.assert_array_equal(with_scene.sel(year=2021).values, without_scene.sel(year=2021).values)


def test_a_scene_lost_after_the_check_is_left_out_of_its_chunks_and_named_or_stops_the_run(
    proxied_api, proxied_config, clean_run, proxy, run_client, monkeypatch, tmp_path
):
    """on_unreadable="skip" covers a COG that fails after the check too (damage inside a file, a
    server that loses it): its windows are left out, the run completes and names it with its year;
    on_unreadable="fail" stops the run naming the COG."""
    scene, folder = _clearest_scene(proxied_api, clean_run)
    with faults_after_the_scene_check(monkeypatch, proxy, FaultPlan(always_fail={folder: 404})):
        lost = run(proxied_config, tmp_path / "skip", run_client, sensors=["sentinel-2"])
        strict = proxied_config.model_copy(update={"on_unreadable": "fail"})
        with pytest.raises(Exception, match=re.escape(f"cannot read COG {proxy.url}{folder}")) as failure:
            run(strict, tmp_path / "fail", run_client, sensors=["sentinel-2"])
    assert isinstance(failure.value, SceneReadError)  # not a bare Exception from an unpicklable __context__
    skipped = lost.result.provenance["skipped_scenes"]["sentinel-2"]
    assert skipped and {s["item_id"] for s in skipped} == {scene}
    assert all(s["href"].startswith(f"{proxy.url}{folder}") and "inside the COG" in s["reason"] and s["year"] is not None
               for s in skipped)
