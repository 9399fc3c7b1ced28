"""The pre-flight: every input a run needs resolved once, every problem one line, nothing written before it passes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, small_run_config
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_config
from pipeline.model.weights import WeightsError
from pipeline.preflight import OUTPUT_MARKER, PreflightError, preflight

CONFIGS = ROOT / "configs"
runner = CliRunner()


def _invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


@pytest.mark.parametrize("config", ["yilian-habirga-earth-search.yaml", "yilian-habirga-planetary-computer.yaml"])
def test_shipped_real_configs_stop_offline_naming_what_is_missing(config, tmp_path, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws/credentials
    out = tmp_path / "out"
    result = _invoke("run", "--check", "-c", str(CONFIGS / config), "--out", str(out))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    text = "\n".join(lines)
    # the RGI file, named with the field to set
    assert "RGI2000-v7.0-G-13_central_asia.shp not found: set inventory.path" in text
    # the shipped weights (trained on the training world, card domain "mixed") are accepted for real scenes
    assert "weights" not in text, text
    assert len(lines) == len(set(lines))  # each problem once
    assert not out.exists()


def test_run_check_passes_on_the_embedded_area_and_writes_nothing(small_study_area, small_weights, tmp_path):
    small_run_config(small_study_area, small_weights, tmp_path)
    out = tmp_path / "out"
    result = _invoke("run", "--check", "-c", str(tmp_path / "config.yaml"), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "pre-flight passed" in result.output
    assert "landsat: local" in result.output and "glaciers" in result.output
    assert not out.exists()
    assert "lies mostly in the winter" not in result.output
    # start and end swapped: a legal season across the new year, in this region's winter, said before a run
    small_run_config(small_study_area, small_weights, tmp_path, season={"start": "09-30", "end": "07-01"})
    swapped = _invoke("run", "--check", "-c", str(tmp_path / "config.yaml"), "--out", str(out))
    assert swapped.exit_code == 2  # the area's scenes are of its summer: none in that season, and why it may be so
    assert "in season 09-30..07-01 of each year (from 09-30 of the year before)" in " ".join(swapped.output.split())
    assert "Note: season 09-30..07-01 (it crosses the new year" in " ".join(swapped.output.split())
    assert not out.exists()


def test_run_check_on_the_default_area_not_yet_generated_writes_nothing(tmp_path, monkeypatch):
    """The default config reads the embedded area from ./glacierwatch-data, which a run generates
    (~260 MB) when missing: the pre-flight says so and generates nothing."""
    monkeypatch.chdir(tmp_path)
    result = _invoke("run", "--check", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "not generated yet" in result.output and "glacierwatch synth" in result.output
    assert list(tmp_path.iterdir()) == []


def test_out_inside_a_store_or_on_a_read_only_disk_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import pipeline.preflight
    from pipeline.preflight import check_output_folder

    store = tmp_path / "good" / "store.zarr"
    store.mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    assert "lies inside the Zarr store" in check_output_folder(store / "sub")
    assert check_output_folder(tmp_path / "good" / "next") is None  # beside it
    # a read-only disk (root passes permission bits, not a read-only mount: os.access answers for both)
    monkeypatch.setattr(pipeline.preflight.os, "access", lambda path, mode: Path(path) != tmp_path)
    problem = check_output_folder(tmp_path / "new" / "out")
    assert problem is not None and f"{tmp_path} cannot be written" in problem
    monkeypatch.undo()
    assert check_output_folder(tmp_path / "new" / "out") is None


def test_run_refuses_an_out_folder_holding_the_users_files(small_study_area, small_weights, tmp_path):
    small_run_config(small_study_area, small_weights, tmp_path)
    out = tmp_path / "thesis"
    (out / "tables").mkdir(parents=True)
    (out / "tables" / "my-table.csv").write_text("a,b\n1,2\n")
    (out / "outlines.parquet").write_bytes(b"my own outlines")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = _invoke("run", "-c", str(tmp_path / "config.yaml"), "--out", str(out))
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"--out {out} already holds files glacierwatch did not write" in errors[0]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing removed, nothing added


def test_an_out_folder_marked_as_glacierwatchs_own_passes(small_study_area, small_weights, tmp_path):
    cfg = small_run_config(small_study_area, small_weights, tmp_path)
    out = tmp_path / "earlier-run"
    (out / "tables").mkdir(parents=True)
    (out / OUTPUT_MARKER).touch()
    inputs = preflight(cfg, out, network=False)
    assert inputs.out == out.resolve() and set(inputs.sensors) == {"sentinel-2", "landsat"}
    assert inputs.inventory is not None and len(inputs.inventory) > 3


def test_synthetic_weights_on_real_scenes_are_refused_unless_asked_for(small_study_area, small_weights, tmp_path):
    import json

    # weights whose card says they saw one synthetic study area only (as the weights shipped until 2026-12)
    card = json.loads(Path(small_weights["landsat"]).with_suffix(".json").read_text())
    card["domain"] = {"kind": "synthetic", "sensors": ["landsat"], "regions": ["an embedded area"]}
    weights = tmp_path / "area-only.safetensors"
    shutil.copy(small_weights["landsat"], weights)
    weights.with_suffix(".json").write_text(json.dumps({**card, "weights_file": weights.name}))
    data = {"synthetic": {"path": str(small_study_area.root)}, "region": {"bbox": list(small_study_area.spec.bbox())},
            "sensors": {"landsat": {"resolution": 30, "provider": "planetary-computer", "weights": str(weights)}}}
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(tmp_path / "real.yaml")
    with pytest.raises((WeightsError, PreflightError), match=r"sensors.landsat.weights \(area-only.safetensors\) were trained on synthetic scenes"):
        preflight(cfg, tmp_path / "out", network=False)
    data["sensors"]["landsat"]["allow_synthetic_weights"] = True
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(data))
    try:
        preflight(load_config(tmp_path / "real.yaml"), tmp_path / "out", network=False)
    except (PreflightError, RuntimeError) as err:  # planetary-computer may be missing here: another problem
        assert "synthetic scenes" not in str(err)


@pytest.mark.parametrize("damage", ["truncated", "not-json", "missing-item"])
def test_a_broken_local_catalog_is_one_line_not_a_traceback(small_study_area, small_weights, tmp_path, damage):
    area = tmp_path / "area"
    shutil.copytree(small_study_area.root, area, ignore=shutil.ignore_patterns("*.tif"))
    catalog = area / "catalog.json"
    if damage == "truncated":
        catalog.write_text(catalog.read_text()[:100])
    elif damage == "not-json":
        catalog.write_bytes(b"\x00\x01 not json")
    else:
        item = next(p for p in area.rglob("*.json") if p.parent.parent.name == "landsat-c2-l2")
        item.unlink()
    data = {"synthetic": {"path": str(area)}, "region": {"bbox": list(small_study_area.spec.bbox())},
            "sensors": {"landsat": {"resolution": 30, "weights": str(small_weights["landsat"])}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    result = _invoke("search", "-c", str(tmp_path / "c.yaml"))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "catalog" in errors[0] or str(area) in errors[0]


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"synthetic": {"path": str(tmp_path / "nothing")},
                                                     "sensors": {"landsat": {"resolution": 30, "provider": "local",
                                                                             "url": str(tmp_path / "x.json")}}}))
    Path(tmp_path / "x.json").write_text("{")
    plain = runner.invoke(app, ["search", "-c", str(tmp_path / "c.yaml")])
    assert plain.exit_code == 2 and "Traceback" not in plain.output
    debug = runner.invoke(app, ["--debug", "search", "-c", str(tmp_path / "c.yaml")])
    assert debug.exit_code == 2 and "Traceback" in debug.output and "JSONDecodeError" in debug.output


@pytest.mark.parametrize("case", ["missing", "folder", "random-bytes", "no-features", "wrong-id-field", "metres-in-lonlat"])
def test_bad_inventory_through_the_cli_is_one_line_exit_2_nothing_written(small_study_area, small_weights, tmp_path, case):
    from test_inventory import _write_bad

    path, _ = _write_bad(tmp_path, case)
    small_run_config(small_study_area, small_weights, tmp_path, inventory={"path": str(path), "id_field": "gid"})
    out = tmp_path / "out"
    for command in (["run", "--check"], ["run"]):
        result = _invoke(*command, "-c", str(tmp_path / "config.yaml"), "--out", str(out))
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 2, result.output
        assert len(errors) == 1 and f"inventory {path}" in errors[0], result.output
        assert not out.exists()


def test_a_year_without_scenes_is_refused_before_the_cluster_starts(small_study_area, small_weights, tmp_path, monkeypatch):
    """`update --year 2023` (the embedded area has scenes of 2016-2022 only: as an update run before its
    season's scenes exist) is refused by the pre-flight, naming the search, before a cluster is started (on
    SLURM a queue wait) or a file written; a year the store holds finished is not searched, an unfinished one is."""
    import pipeline.scale.cluster
    from catalog.providers import get_profile
    from catalog.search import LocalCatalogSource
    from pipeline.model.weights import sha256
    from pipeline.store import RegionStore

    cfg = small_run_config(small_study_area, small_weights, tmp_path)
    out = tmp_path / "out"
    store = RegionStore.create(str(out / "store.zarr"), {s: cfg.grid(s) for s in cfg.sensors},
                               weights_sha256={s: sha256(small_weights[s]) for s in cfg.sensors}, chunk_size=cfg.tiling.tile_px)
    for sensor in cfg.sensors:
        store.add_year(sensor, 2015, scene_ids=[], config_hash="earlier")  # finished (no scenes there today: not asked)
        for unit in store.units(sensor, 2015):
            store.manifest.mark_done(unit, "0" * 64)
        store.add_year(sensor, 2021, scene_ids=[], config_hash="earlier")  # left unfinished: a run finishes it first
    (out / OUTPUT_MARKER).touch()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    started, searched = [], []

    def no_cluster(*args, **kwargs):
        started.append(args)
        raise AssertionError("the cluster was started")

    def search(self, query):
        if query.collection != get_profile(cfg.dem.provider).collection("dem"):  # the scenes' searches
            searched.append((query.collection, query.start.year))
        return found(self, query)

    found = LocalCatalogSource.search
    monkeypatch.setattr(pipeline.scale.cluster, "start_cluster", no_cluster)
    monkeypatch.setattr(LocalCatalogSource, "search", search)
    config = str(tmp_path / "config.yaml")
    for check in ([], ["--check"]):
        searched.clear()
        result = _invoke("update", "--year", "2023", "-c", config, "--out", str(out), *check)
        assert result.exit_code == 2, result.output
        errors = " ".join(result.output.split()).split("error: ")[1:]
        assert len(errors) == 2, result.output  # one line per sensor
        for sensor, error in zip(("sentinel-2", "landsat"), errors, strict=True):
            assert error.startswith(f"no {sensor} scenes") and " for 2023: searched " in error, error
            assert f"over bbox {list(cfg.region.bbox)}" in error and "season 07-01..09-30 (2023-07-01..2023-09-30)" in error
            assert f"cloud cover <= {cfg.sensors[sensor].max_cloud}%" in error and "catalog.json" in error
            assert "wait until the season's scenes are published" in error and f"sensors.{sensor}.max_cloud" in error
            assert "2015" not in error and "2021" not in error
        collections = [get_profile(cfg.sensors[s].provider).collection(s) for s in cfg.sensors]
        assert sorted(searched) == sorted((c, y) for c in collections for y in (2021, 2023))  # not the finished 2015
    assert not started
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # a first run of a config whose years end in 2023: nothing at all written
    small_run_config(small_study_area, small_weights, tmp_path, years={"start": 2022, "end": 2023})
    result = _invoke("run", "-c", config, "--out", str(tmp_path / "new"))
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "for 2023: searched" in said and "2022" not in said.split("error:", 1)[1], said
    assert not started and not (tmp_path / "new").exists()


def test_a_year_whose_season_is_not_over_is_refused_offline(small_study_area, small_weights, tmp_path, monkeypatch):
    """A run (or `update --year Y`) in August of Y: the scenes so far exist, but a map made from them would be the
    early season's (snow over the tongue) stored as the year's, finished, and a later update would skip it."""
    from datetime import UTC, datetime

    import pipeline.scale.cluster
    from catalog.scenes import seasons_not_over

    assert seasons_not_over([2025, 2026], ("07-01", "09-30"), now=datetime(2026, 10, 1, tzinfo=UTC)) is None
    early = str(seasons_not_over([2025, 2026, 2027], ("07-01", "09-30"), now=datetime(2026, 8, 15, tzinfo=UTC)))
    assert early.startswith("2026's season (2026-07-01..2026-09-30) is not over; 2027's season (2027-07-01..2027-09-30) "
                            "has not begun (today 2026-08-15)") and "2025" not in early
    assert "run after 2027-09-30" in early and "leave 2026, 2027 out" in early

    import catalog.scenes

    year = datetime.now(UTC).year  # a later year is refused by the CLI already ("in the future")
    small_run_config(small_study_area, small_weights, tmp_path, years={"start": year - 1, "end": year})
    monkeypatch.setattr(pipeline.scale.cluster, "start_cluster", lambda *a, **k: (_ for _ in ()).throw(AssertionError("started")))
    monkeypatch.setattr(catalog.scenes, "today", lambda: datetime(year, 8, 15, tzinfo=UTC))
    for check in ([], ["--check"]):  # offline too: no scene search needed to know
        result = _invoke("run", "-c", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "out"), *check)
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and f"{year}'s season ({year}-07-01..{year}-09-30) is not over (today {year}-08-15)" in said, said
    assert not (tmp_path / "out").exists()
