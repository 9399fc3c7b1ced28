"""Crashes mid-run: the whole run killed, a Dask worker killed, a store write failing.

After each, finishing the run must leave the store the clean small run left (the `small_run`
fixture: same config content, same weights), byte for byte - every file, the run/ folder
included: its manifest markers hold no timestamps (so they are equal too) and the update lock
is gone once a run finishes. A crash may only cost time, never change a number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zarr
from conftest import small_run_config
from rich.console import Console

from pipeline.run import run_study
from pipeline.store import RegionStore, StoreError

S2, LANDSAT = "sentinel-2", "landsat"
UNITS = 4  # 2 sensors x 2 years x one 2048-px chunk each on the quarter-size area


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def markers(store: Path) -> list[Path]:
    folder = store / "run" / "manifest"
    return sorted(folder.rglob("*.json")) if folder.is_dir() else []


def quiet(tmp_path: Path) -> Console:
    return Console(file=open(tmp_path / "log.txt", "a"), width=120)


def assert_equals_clean_run(store: Path, small_run) -> None:
    clean = files(Path(small_run[1].store_url))
    mine = files(store)
    assert sorted(mine) == sorted(clean)
    assert [k for k in clean if mine[k] != clean[k]] == []


def stop_cli_run_after_its_first_unit(tmp_path: Path, out: Path, stop) -> subprocess.Popen:
    """`glacierwatch run` of tmp_path/config.yaml into `out` in a session of its own (a kill of the group takes its
    cluster's worker processes too), `stop(proc)` once its first store unit is finished; the ended process.
    Its output is in tmp_path/cli.log."""
    cli = Path(sys.executable).with_name("glacierwatch")
    with open(tmp_path / "cli.log", "w") as log:
        proc = subprocess.Popen(
            [str(cli), "run", "-c", str(tmp_path / "config.yaml"), "--out", str(out)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
        )
        try:
            deadline = time.monotonic() + 300
            while not markers(out / "store.zarr"):
                assert proc.poll() is None, f"the run ended before its first unit:\n{(tmp_path / 'cli.log').read_text()}"
                assert time.monotonic() < deadline, "no unit finished in 300 s"
                time.sleep(0.02)
            stop(proc)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc


@pytest.mark.slow
def test_kill_9_mid_inference_then_rerun_equals_a_clean_run(small_study_area, small_weights, small_run, run_client, tmp_path, caplog):
    cfg = small_run_config(small_study_area, small_weights, tmp_path)
    out = tmp_path / "out"
    store = out / "store.zarr"
    # the CLI and the worker processes of its cluster at once
    proc = stop_cli_run_after_its_first_unit(tmp_path, out, lambda proc: os.killpg(proc.pid, signal.SIGKILL))
    assert proc.returncode == -signal.SIGKILL
    assert 1 <= len(markers(store)) < UNITS, "killed mid-inference: some units done, not all"

    # The rerun takes the dead run's stale lock over (saying so) and resumes: nothing to delete by hand.
    lock = store.resolve() / "run" / "update.lock"
    holder = json.loads(lock.read_text())
    host = socket.gethostname()
    assert (holder["pid"], holder["host"], holder["purpose"]) == (proc.pid, host, "glacierwatch run 2020-2021")
    done_before = markers(store)
    with caplog.at_level(logging.WARNING, logger="pipeline.store.lock"):
        run_study(cfg, out, client=run_client, console=quiet(tmp_path), publish=False)
    assert [r.getMessage() for r in caplog.records if r.name == "pipeline.store.lock"] == [
        f"store {store.resolve()}: taking over the stale lock of glacierwatch run 2020-2021 (pid {proc.pid} on host "
        f"{host}, started {holder['started']}): that process is no longer running; finished units are kept and the "
        "run resumes where it stopped"
    ]
    assert not lock.exists()
    assert len(markers(store)) == UNITS and set(done_before) <= set(markers(store))
    assert_equals_clean_run(store, small_run)


@pytest.mark.slow
def test_sigterm_mid_inference_closes_the_cluster_and_releases_the_lock(small_study_area, small_weights, tmp_path):
    """A batch system's time limit, `kubectl delete` or a pod's deadline send SIGTERM. The CLI ignored it
    as a container's PID 1 (no handler) and, elsewhere, died without closing its cluster: worker jobs or
    pods kept running and the store's lock stayed for the next run to refuse or take over."""
    small_run_config(small_study_area, small_weights, tmp_path)
    out = tmp_path / "out"
    store = out / "store.zarr"

    def sigterm(proc):  # the CLI alone, as SLURM and Kubernetes signal the main process
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)

    proc = stop_cli_run_after_its_first_unit(tmp_path, out, sigterm)
    said = (tmp_path / "cli.log").read_text()
    assert proc.returncode == 128 + signal.SIGTERM, said
    assert "terminated (SIGTERM): what was started is closed" in said
    assert not (store / "run" / "update.lock").exists(), "the lock is released, not left stale"
    deadline = time.monotonic() + 30
    while True:  # the local cluster's worker processes (same session) are gone with it
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "worker processes outlived the CLI"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_dask_worker_killed_mid_inference_changes_nothing(small_study_area, small_weights, small_run, tmp_path):
    from distributed import Client, LocalCluster

    cfg = small_run_config(small_study_area, small_weights, tmp_path)
    killed: list[str] = []
    stop = threading.Event()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)

        def kill_a_worker_running_the_network():
            while not stop.is_set():
                try:
                    for ws in list(cluster.scheduler.workers.values()):
                        if any("predict_piece" in str(ts.key) for ts in list(ws.processing)):
                            os.kill(pids[ws.address], signal.SIGKILL)
                            killed.append(ws.address)
                            return
                except RuntimeError:  # the scheduler changed the dict under us: look again
                    pass
                time.sleep(0.01)

        killer = threading.Thread(target=kill_a_worker_running_the_network, daemon=True)
        killer.start()
        try:
            result = run_study(cfg, tmp_path / "out", client=client, console=quiet(tmp_path), publish=False)
        finally:
            stop.set()
            killer.join()
    assert len(killed) == 1, "no worker was seen running inference"
    assert_equals_clean_run(Path(result.store_url), small_run)


@pytest.mark.slow
def test_store_write_failure_fails_clearly_and_the_rerun_equals_a_clean_run(
    small_study_area, small_weights, small_run, run_client, tmp_path, monkeypatch
):
    cfg = small_run_config(small_study_area, small_weights, tmp_path)
    out = tmp_path / "out"
    store_path = (out / "store.zarr").resolve()
    real_set = zarr.storage.LocalStore.set
    written: list[str] = []

    async def disk_fills_on_the_second_unit(self, key, value):
        if "/probability/c/" in key:
            if written:  # half of this chunk's bytes reach the disk, then the disk is full
                data = value.to_bytes()
                (Path(self.root) / key).parent.mkdir(parents=True, exist_ok=True)
                (Path(self.root) / key).write_bytes(data[: len(data) // 2])
                raise OSError(28, "No space left on device")
            written.append(key)
        return await real_set(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", disk_fills_on_the_second_unit)
    with pytest.raises(StoreError) as failed:
        run_study(cfg, out, client=run_client, console=quiet(tmp_path), publish=False)
    monkeypatch.undo()
    # the years' units are written concurrently: either may be the one that finds the disk full
    match = re.fullmatch(
        rf"writing unit sentinel-2/(2020|2021)/0\.0 to the store at {re.escape(str(store_path))} failed \(OSError: \[Errno 28\] "
        r"No space left on device\); the unit is not marked finished, so it is written again from scratch: fix the cause "
        r"\(disk space, permissions, credentials\) and run the same command again",
        str(failed.value),
    )
    assert match, str(failed.value)
    lost_year = int(match.group(1))
    other_year = 4041 - lost_year
    assert len(written) == 1 and written[0] == f"sentinel-2/probability/c/{other_year - 2020}/0/0"
    store = RegionStore.open(str(store_path))
    # at most the finished unit is marked (it may still have been writing its other layers); the torn one never
    assert {(y, rc) for y in (2020, 2021) for rc in store.manifest.done(S2, y)} <= {(other_year, (0, 0))}
    assert store.manifest.done(LANDSAT, 2020) == store.manifest.done(LANDSAT, 2021) == set()
    index = lost_year - 2020
    torn = store_path / S2 / "probability" / "c" / str(index) / "0" / "0"
    clean = Path(small_run[1].store_url) / S2 / "probability" / "c" / str(index) / "0" / "0"
    assert torn.stat().st_size == clean.stat().st_size // 2
    assert [p.name for p in store_path.glob("run/*.lock")] == []  # the lock went with the failed run
    assert f"sentinel-2/{lost_year}/0.0" in [u.key for u in store.pending_units(S2)]

    run_study(cfg, out, client=run_client, console=quiet(tmp_path), publish=False)
    assert torn.read_bytes() == clean.read_bytes()
    assert_equals_clean_run(store_path, small_run)


def test_files_left_by_a_write_killed_mid_rename_are_removed_when_the_unit_is_rewritten(tmp_path):
    """zarr writes a local chunk aside (``<chunk>.<uuid>.partial``) and renames it; the manifest
    does the same with its markers. kill -9 between the two leaves the aside behind: the unit is
    still pending, and its rewrite removes the leftovers, so the store's files are a clean run's."""
    import numpy as np

    from catalog.grid import TargetGrid
    from pipeline.store import encode_probability

    grid = TargetGrid(32644, 10.0, (500000.0, 4700000.0, 500640.0, 4700480.0))  # 48 x 64 px, 2 x 2 chunks of 32
    p = encode_probability(np.random.default_rng(0).random(grid.shape))

    def store_at(name: str) -> RegionStore:
        store = RegionStore.create(str(tmp_path / name), {S2: grid}, weights_sha256="w", chunk_size=32)
        store.add_year(S2, 2020, scene_ids=["a"], config_hash="c")
        return store

    clean, crashed = store_at("clean.zarr"), store_at("crashed.zarr")
    clean.write_probability(S2, 2020, p, scheduler="synchronous")
    leftovers = [
        tmp_path / "crashed.zarr" / S2 / "probability" / "c" / "0" / "0" / "1.0123456789abcdef0123456789abcdef.partial",
        tmp_path / "crashed.zarr" / "run" / "manifest" / S2 / "2020" / "0.1.json.0123456789abcdef.partial",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"torn")
    assert crashed.pending_units(S2) == crashed.units(S2, 2020)  # an aside never counts as finished
    assert crashed.write_probability(S2, 2020, p, scheduler="synchronous") == crashed.units(S2, 2020)
    assert [path.exists() for path in leftovers] == [False, False]
    assert files(tmp_path / "crashed.zarr") == files(tmp_path / "clean.zarr")


@pytest.mark.slow
def test_a_year_an_earlier_run_left_unfinished_is_finished_first_never_read_as_ice_free(
    small_study_area, small_weights, small_run, run_client, tmp_path
):
    """An update killed mid-inference left its year in the store (axis, scene ids) with chunks unwritten;
    a later run asked for other years analysed it as it read: Sentinel-2 0 km² that year, -100 %, no
    flag, published (the helper auditing the annual update). A run finishes it first, and the analysis
    refuses a store that still holds one."""
    import shutil

    from pipeline.config import Analysis
    from pipeline.glaciers.analysis import analyse_store

    cfg = small_run_config(small_study_area, small_weights, tmp_path)
    out = tmp_path / "out"
    shutil.copytree(Path(small_run[1].store_url), out / "store.zarr")
    (out / ".glacierwatch").touch()  # the folder of that earlier run
    store = RegionStore.open(str(out / "store.zarr"))
    for unit in store.units(S2, 2021):  # as a kill before its units were written leaves it
        Path(store.manifest._path(unit)).unlink()
    assert store.unfinished_years(S2) == [2021]
    with pytest.raises(StoreError, match=r"holds unfinished years \(sentinel-2 2021\).*glacierwatch update --year YEAR"):
        analyse_store(store, Analysis())
    with open(tmp_path / "log.txt", "w") as log:
        run_study(cfg, out, years=[2020], client=run_client, console=Console(file=log, width=200), publish=False)
    assert "sentinel-2: finishing 2021, left unfinished by an earlier run" in (tmp_path / "log.txt").read_text()
    assert store.unfinished_years(S2) == []
    assert_equals_clean_run(out / "store.zarr", small_run)


def test_what_a_stop_leaves_is_said_in_the_stopped_commands_own_terms():
    """`train` stopped by Ctrl-C was told of a store lock and a resume it does not have (a helper's training audit)."""
    from pipeline.cli.errors import AFTER_A_STOP

    assert "lock" in AFTER_A_STOP["run"] and "lock" in AFTER_A_STOP["update"]
    for command in ("train", "train-world", None):
        assert "lock" not in AFTER_A_STOP[command]
    assert "no final weights" in AFTER_A_STOP["train"] and "--resume skips the networks already finished" in AFTER_A_STOP["train-world"]
