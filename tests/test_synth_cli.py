"""`glacierwatch synth` as a new user runs it: a relative --out, an empty folder made for it, a
catalog.json lost afterwards, and a generation killed half-way."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pystac
import pytest
from typer.testing import CliRunner

from catalog.synthetic.area_folder import remove_abandoned
from pipeline.cli import app

SIZE = "0.05"  # the smallest area: 6 glaciers, 67 items
CLI = Path(sys.executable).with_name("glacierwatch")


@pytest.fixture(scope="module")
def relative_area(tmp_path_factory):
    """`glacierwatch synth --out data` run from the folder holding an empty `data/`: (folder, result)."""
    folder = tmp_path_factory.mktemp("synth-relative")
    (folder / "data").mkdir()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        result = CliRunner().invoke(app, ["synth", "--out", "data", "--size", SIZE])
    finally:
        os.chdir(cwd)
    return folder, result


@pytest.mark.slow
def test_a_relative_out_into_an_empty_folder_writes_hrefs_that_resolve(relative_area):
    folder, result = relative_area
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["data"]  # no *-incomplete-* left beside it
    catalog = pystac.Catalog.from_file(str(folder / "data" / "catalog.json"))
    hrefs = [asset.get_absolute_href() for item in catalog.get_items(recursive=True) for asset in item.assets.values()]
    assert len(hrefs) > 400
    assert [h for h in hrefs if not Path(h).is_file()] == []
    assert all(Path(h).is_relative_to(folder / "data") for h in hrefs)
    # and still after the folder is moved: hrefs are relative to their items
    moved = shutil.copytree(folder / "data", folder.parent / f"{folder.name}-moved", symlinks=True)
    item = next(pystac.Catalog.from_file(str(moved / "catalog.json")).get_items(recursive=True))
    assert Path(next(iter(item.assets.values())).get_absolute_href()).is_relative_to(moved)
    shutil.rmtree(moved)


@pytest.mark.slow
def test_a_lost_catalog_json_is_not_reported_as_a_study_area(relative_area, tmp_path):
    folder, _ = relative_area
    area = shutil.copytree(folder / "data", tmp_path / "area")
    runner = CliRunner()
    again = runner.invoke(app, ["synth", "--out", str(area), "--size", SIZE])
    assert again.exit_code == 0 and "study area: 6 glaciers" in again.output  # complete: returned as it is
    (area / "catalog.json").unlink()
    result = runner.invoke(app, ["synth", "--out", str(area), "--size", SIZE])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert message.startswith(f"error: {area} is this study area but incomplete (catalog.json missing)")
    assert f"run `glacierwatch synth --out {area}` again" in message
    assert not (area / "catalog.json").exists()


def test_an_occupied_folder_is_refused_and_left_alone(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "thesis.tex").write_text("mine")
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "data"), "--size", SIZE])
    assert result.exit_code == 2
    assert "already exists and is not this study area" in result.output
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "Ctrl-C", "kill-9"])
def test_a_killed_synth_leaves_no_workers_and_no_incomplete_folder(tmp_path, signum):
    log = open(tmp_path / "synth.log", "w")
    proc = subprocess.Popen([str(CLI), "synth", "--out", "area", "--size", SIZE], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # wait until workers render into the temporary folder
        _wait_until(lambda: any(tmp_path.glob("area-incomplete-*/*/*/*.tif")) or proc.poll() is not None, 120,
                    "no scene written in 120 s")
        assert proc.poll() is None, (tmp_path / "synth.log").read_text()
        workers = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert workers
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)  # Ctrl-C reaches the whole foreground group
        else:
            os.kill(proc.pid, signum)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    _wait_until(lambda: all(_gone(pid) for pid in workers), 20, "pool workers still running")
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "synth.log")
    if signum == signal.SIGKILL:  # nothing runs in the killed process; the next synth removes its folder
        assert left == [f"area-incomplete-{proc.pid}"]
        remove_abandoned(tmp_path / "area")
        left = sorted(p.name for p in tmp_path.iterdir() if p.name != "synth.log")
    assert left == []
