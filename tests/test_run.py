"""`glacierwatch run` / `update` end to end on the quarter-size embedded area (tiny random networks).

The numbers of the shipped weights are checked in test_shipped_weights.py; here the subject is
the orchestration: what is written where, reruns and updates that change nothing they should
not, the lock, and refusals that leave no store behind.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import shapely.affinity
from conftest import small_run_config, tiny_weights
from rich.console import Console

from catalog.search import SearchError
from pipeline.glaciers.analysis import TABLES, TRUTH
from pipeline.glaciers.summary import summary_table
from pipeline.model.weights import WeightsError
from pipeline.preflight import OUTPUT_MARKER
from pipeline.run import run_study
from pipeline.store import IncompatibleStoreError, RegionStore, StoreError
from pipeline.store.lock import StoreLockedError

pytestmark = pytest.mark.slow  # every test runs (or refuses) a run on the generated area

def _files(root: Path, under: str) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / under).rglob("*"))
        if p.is_file()
    }


def test_run_writes_every_output(small_run):
    cfg, result = small_run
    out = result.out
    assert Path(result.store_url) == out / "store.zarr"
    for name in ("areas", "area_by_band", "area_by_aspect", "terminus", "retreat", "accuracy", "total_area", "area_change"):
        assert (out / "tables" / f"{name}.parquet").is_file() and (out / "tables" / f"{name}.csv").is_file()
    assert set(result.tables) == set(TABLES) | {"generator_check"}  # a synthetic area: checked against its generator
    check = result.tables["generator_check"]
    assert set(check.sensor) == {"sentinel-2", "landsat"} and check.value.notna().all()
    assert (out / "tables" / "generator_check.csv").is_file()
    areas = result.tables["areas"]
    assert set(areas.sensor) == {"sentinel-2", "landsat", TRUTH} and set(areas.year) == {2020, 2021}
    outlines = gpd.read_parquet(out / "outlines.parquet")
    assert set(outlines.sensor) == {"sentinel-2", "landsat", TRUTH}
    # and a GeoPackage of the same for GIS whose GDAL has no Parquet driver
    gpkg = gpd.read_file(out / "outlines.gpkg", layer="outlines")
    assert len(gpkg) == len(outlines) and gpkg.crs == outlines.crs
    assert gpkg.geometry.area.sum() == pytest.approx(outlines.geometry.area.sum(), rel=1e-9)
    # the vectorised outlines are the raster statistics' pixels, exactly
    merged = outlines.merge(areas, on=["glacier_id", "sensor", "year"], suffixes=("_vector", ""))
    np.testing.assert_allclose(merged.area_km2_vector, merged.area_km2, rtol=1e-9)
    np.testing.assert_allclose(merged.perimeter_km_vector, merged.perimeter_km, rtol=1e-9)
    assert (out / "report" / "index.html").is_file()
    assert (out / "stac" / "catalog.json").is_file()


def test_provenance_names_config_weights_and_scenes(small_run):
    cfg, result = small_run
    prov = json.loads((result.out / "provenance.json").read_text())
    assert prov["config_hash"] == cfg.digest()
    for sensor in ("sentinel-2", "landsat"):
        assert prov["weights"][sensor]["sha256"] == hashlib.sha256(Path(cfg.weights_path(sensor)).read_bytes()).hexdigest()
        store = RegionStore.open(result.store_url)
        assert prov["scenes"][sensor] == {str(y): r["scene_ids"] for y, r in store.year_records(sensor).items()}
        assert all(prov["scenes"][sensor][str(y)] for y in (2020, 2021))
    assert set(prov["timings_s"]) >= {"inputs", "statistics", "report"}


def test_truth_tables_match_the_truth_outlines(small_run, small_study_area):
    """The truth analysed through the store path has the generator's own areas (10 m pixels on its
    lattice: exact) for every glacier inside the region; those cut by the region's edge are less."""
    cfg, result = small_run
    grid = cfg.grid("sentinel-2")
    truth_areas = result.tables["areas"].query("sensor == @TRUTH").set_index(["glacier_id", "year"]).area_km2
    known = gpd.read_parquet(small_study_area.root / "truth" / "outlines.parquet").to_crs(grid.epsg)
    known = known[known.year.isin([2020, 2021])]
    inside = known.within(shapely.box(*grid.bounds))
    assert inside.sum() >= 0.7 * len(known)
    for row in known.itertuples():
        mapped = truth_areas.loc[(row.glacier_id, row.year)]
        if inside[row.Index]:
            assert mapped == pytest.approx(row.geometry.area / 1e6, abs=1e-9)
        else:
            assert mapped < row.geometry.area / 1e6


def test_rerun_changes_nothing_in_the_store(small_run, run_client, tmp_path):
    cfg, result = small_run
    before = _files(result.out, "store.zarr")
    again = run_study(cfg, result.out, client=run_client, console=Console(file=open(tmp_path / "log.txt", "w")), publish=False)
    assert _files(result.out, "store.zarr") == before
    pd.testing.assert_frame_equal(again.tables["areas"], result.tables["areas"])


def _scenes_moved(area_root: Path, into: Path, months: int) -> Path:
    """A copy of a generated area whose scenes were taken `months` earlier (items and collection extents)."""
    import shutil

    shutil.copytree(area_root, into)
    def moved(text: str) -> str:
        return (pd.Timestamp(text) - pd.DateOffset(months=months)).strftime("%Y-%m-%dT%H:%M:%SZ")

    for path in into.glob("*/**/*.json"):
        data = json.loads(path.read_text())
        if data.get("type") == "Feature" and data["properties"].get("datetime"):
            data["properties"]["datetime"] = moved(data["properties"]["datetime"])
        elif data.get("type") == "Collection" and "cop-dem" not in data["id"]:
            data["extent"]["temporal"]["interval"] = [[moved(t) for t in data["extent"]["temporal"]["interval"][0]]]
        path.write_text(json.dumps(data))
    return into


def test_a_season_across_the_new_year_makes_each_year_of_the_looks_before_its_end(small_run, small_study_area, run_client,
                                                                                  tmp_path):
    """A southern-hemisphere glacier is mapped at the end of an ablation season that crosses the new year
    (season 12-01..03-31, each year labelled by the year it ends in). The quarter-size area's scenes,
    moved 7 months earlier (July 2020 -> December 2019, August -> January, September -> February), give
    each year the same looks as the northern season gave it, so the same maps and areas; its fronts are
    dated in the months they were seen, December in the year before the map's."""
    cfg, result = small_run
    area = _scenes_moved(small_study_area.root, tmp_path / "area", months=7)
    southern = cfg.model_copy(update={"season": cfg.season.model_validate({"start": "12-01", "end": "03-31"}),
                                      "synthetic": cfg.synthetic.model_copy(update={"path": str(area)})})
    with open(tmp_path / "log.txt", "w") as log:
        moved = run_study(southern, tmp_path / "out", client=run_client, console=Console(file=log), publish=False)
    for sensor in ("sentinel-2", "landsat"):
        north, south = RegionStore.open(result.store_url), RegionStore.open(moved.store_url)
        assert list(south.year_records(sensor)) == [2020, 2021]
        assert [r["scene_ids"] for r in south.year_records(sensor).values()] == \
            [r["scene_ids"] for r in north.year_records(sensor).values()]
        np.testing.assert_array_equal(south.open_dataset(sensor).probability.values, north.open_dataset(sensor).probability.values)
    columns = ["sensor", "glacier_id", "year", "area_km2", "area_err_km2"]
    pd.testing.assert_frame_equal(moved.tables["areas"][columns], result.tables["areas"][columns])
    seen = moved.tables["terminus"].dropna(subset=["doy"])
    seen = seen[seen.sensor != TRUTH]
    dates = pd.DatetimeIndex(seen["date"])
    assert len(seen) and set(dates.month) <= {12, 1, 2} and 12 in set(dates.month)
    np.testing.assert_array_equal(dates.year, seen["year"].to_numpy() - (dates.month == 12))


def test_update_appends_a_year_and_leaves_earlier_years_untouched(small_run, run_client, tmp_path):
    cfg, result = small_run
    out = tmp_path / "out"
    import shutil

    shutil.copytree(result.out / "store.zarr", out / "store.zarr")
    (out / OUTPUT_MARKER).touch()  # the folder of an earlier run
    before = {k: v for k, v in _files(out, "store.zarr").items() if "/run/" not in k}
    updated = cfg.model_copy(update={"years": cfg.years.model_validate({"start": 2020, "end": 2022})})
    console = Console(file=open(tmp_path / "log.txt", "w"))
    result2 = run_study(updated, out, years=[2022], client=run_client, console=console, publish=False)
    after = _files(out, "store.zarr")
    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    # only metadata grows (year axis, provenance); no chunk of 2020/2021 is rewritten
    assert all(k.endswith("zarr.json") or "/year/" in k for k in changed), changed
    prob_chunks = [k for k in after if "/probability/c/" in k]
    assert {k for k in prob_chunks if k in before} == {k for k in before if "/probability/c/" in k}
    assert set(result2.tables["areas"].year) == {2020, 2021, 2022}
    twice = _files(out, "store.zarr")
    run_study(updated, out, years=[2022], client=run_client, console=console, publish=False)
    assert _files(out, "store.zarr") == twice


def test_second_update_at_once_is_refused(small_run, run_client, tmp_path):
    cfg, result = small_run
    store = RegionStore.open(result.store_url)
    with store.lock("someone else's update"):
        with pytest.raises(StoreLockedError, match="someone else's update"):
            run_study(cfg, result.out, client=run_client, console=Console(file=open(tmp_path / "log.txt", "w")), publish=False)


def test_unreachable_stac_api_fails_before_a_store_exists(small_study_area, small_weights, tmp_path, run_client):
    cfg = small_run_config(small_study_area, small_weights, tmp_path)
    broken = {**cfg.sensors["sentinel-2"].model_dump(), "provider": "earth-search", "url": "http://127.0.0.1:9/stac/v1"}
    cfg = cfg.model_copy(update={"sensors": {**cfg.sensors, "sentinel-2": cfg.sensors["sentinel-2"].model_validate(broken)}})
    with pytest.raises(SearchError, match="127.0.0.1:9"):
        run_study(cfg, tmp_path / "out", client=run_client, console=Console(file=open(tmp_path / "log.txt", "w")))
    assert not (tmp_path / "out" / "store.zarr").exists()


def test_store_made_with_other_weights_is_refused_with_the_way_out(small_run, small_study_area, tmp_path, run_client):
    cfg, result = small_run
    other = tiny_weights("landsat", tmp_path / "other.safetensors", seed=7)
    sensors = {**cfg.sensors, "landsat": cfg.sensors["landsat"].model_copy(update={"weights": str(other)})}
    with pytest.raises(IncompatibleStoreError, match="start a new store"):
        run_study(cfg.model_copy(update={"sensors": sensors}), result.out, client=run_client,
                  console=Console(file=open(tmp_path / "log.txt", "w")), publish=False)


def test_store_whose_glacier_ids_came_from_another_inventory_is_refused(small_run, tmp_path, run_client):
    """The store keeps its glacier_id layer across runs: a later run with other outlines would label
    pixels with the old ones and name them with the new ids."""
    from pipeline.glaciers.inventory import inventory_sha256, read_inventory

    cfg, result = small_run
    store = RegionStore.open(str(result.out / "store.zarr"))
    inventory = read_inventory(cfg.inventory_path(), cfg.inventory.id_field)
    recorded = store.array("sentinel-2/glacier_id").attrs["inventory_sha256"]
    assert recorded == inventory_sha256(inventory, cfg.analysis.glacier_buffer_m)
    moved = inventory.copy()
    moved.loc[moved.index[0], "geometry"] = shapely.affinity.translate(moved.geometry.iloc[0], 30.0, 0.0)
    moved.to_file(tmp_path / "moved.gpkg", driver="GPKG")
    other = cfg.model_copy(update={"inventory": cfg.inventory.model_copy(update={"path": str(tmp_path / "moved.gpkg")})})
    before = _files(result.out, "store.zarr")
    with pytest.raises(IncompatibleStoreError, match="rasterised from another inventory"):
        run_study(other, result.out, client=run_client, console=Console(file=open(tmp_path / "log.txt", "w")), publish=False)
    assert _files(result.out, "store.zarr") == before


def test_missing_weights_are_named(small_study_area, small_weights, tmp_path, run_client):
    cfg = small_run_config(small_study_area, small_weights, tmp_path)
    sensors = {**cfg.sensors, "landsat": cfg.sensors["landsat"].model_copy(update={"weights": str(tmp_path / "none.safetensors")})}
    with pytest.raises(WeightsError, match=r"no landsat weights at .*none\.safetensors.*glacierwatch train --sensor landsat"):
        run_study(cfg.model_copy(update={"sensors": sensors}), tmp_path / "out", client=run_client,
                  console=Console(file=open(tmp_path / "log.txt", "w")))
    assert not (tmp_path / "out" / "store.zarr").exists()


def test_summary_has_a_row_per_sensor_and_the_truth_with_the_generators_numbers(small_run, small_study_area):
    """The truth's summary row against numbers computed without the pipeline: the generator's
    pixel-exact outlines clipped to the grid (area) and its own retreat rates (retreat)."""
    cfg, result = small_run
    summary = summary_table(result.tables).set_index("sensor")
    assert list(summary.index) == ["sentinel-2", "landsat", TRUTH]
    grid = cfg.grid("sentinel-2")
    region = shapely.box(*grid.bounds)
    known = gpd.read_parquet(small_study_area.root / "truth" / "outlines.parquet").to_crs(grid.epsg)
    for year, column in ((2020, "area0_km2"), (2021, "area1_km2")):
        clipped = known[known.year == year].geometry.intersection(region).area.sum() / 1e6
        assert summary.loc[TRUTH, column] == pytest.approx(clipped, rel=1e-9)
    assert np.isnan(summary.loc[TRUTH, "IoU"]) and 0 <= summary.loc["sentinel-2", "IoU"] <= 1
    # retreat 2020-2021 of the glaciers wholly inside the region, against the generator's rates:
    # one year at 10 m pixels states ±14 m/a per glacier; the mean over >= 10 glaciers must agree
    # within the paper's ±2.36 m/a
    rates = gpd.read_parquet(small_study_area.root / "truth" / "glaciers.parquet").set_index("glacier_id").retreat_m_a
    inside = set(known[(known.year == 2020) & known.within(region.buffer(-20.0))].glacier_id)
    assert summary.loc[TRUTH, "n_glaciers"] >= 10 and len(inside) >= 10
    got = result.tables["retreat"].query("sensor == @TRUTH and method == 'main_axis' and year0 == 2020 and year1 == 2021")
    got = got[got.glacier_id.isin(inside)].set_index("glacier_id").rate_m_a
    assert len(got) >= 10
    assert got.mean() == pytest.approx(rates.reindex(got.index).mean(), abs=2.36)
    failures = result.tables["failures"]
    assert summary.loc[TRUTH, "n_failures"] == failures.loc[failures.sensor == TRUTH, "glacier_id"].nunique()  # glaciers, not rows


def test_cli_run_prints_the_summary_and_update_refuses_a_future_year(small_run, run_client, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    cfg, result = small_run
    config = Path(cfg.base_dir) / "config.yaml"
    runner = CliRunner()
    out = runner.invoke(app, ["run", "-c", str(config), "--out", str(result.out), "--cluster", run_client.scheduler.address])
    assert out.exit_code == 0, out.output
    assert "glacier area, change and retreat" in out.output and "sentinel-2" in out.output and "time per stage" in out.output
    future = runner.invoke(app, ["update", "-c", str(config), "--year", "2999", "--out", str(tmp_path / "never")])
    assert future.exit_code == 2
    assert "--year 2999" in future.output and "is in the future" in future.output
    assert not (tmp_path / "never").exists()
    # an update where no run made a store (a schedule without its --out) made a store of that year alone
    lost = runner.invoke(app, ["update", "-c", str(config), "--year", "2021", "--out", str(tmp_path / "elsewhere")])
    assert lost.exit_code == 2
    assert "no store at" in lost.output and "give that run's --out" in " ".join(lost.output.split())
    assert not (tmp_path / "elsewhere").exists()
    # a year before the store's last: said before any search or cluster, in the CLI's words, not pydantic's
    early = runner.invoke(app, ["update", "-c", str(config), "--year", "2019", "--out", str(result.out)])
    assert early.exit_code == 2 and "can only be added after the last" in " ".join(early.output.split())
    assert "pydantic" not in future.output and "validation error" not in future.output
    gap = runner.invoke(app, ["update", "-c", str(config), "--year", "2023", "--out", str(result.out), "--check"])
    assert "2022 will be missing from the series for good" in " ".join(gap.output.split()), gap.output


def test_a_run_says_when_its_analysis_settings_revise_what_the_last_run_published(tmp_path):
    """Every year's tables are made again with the current settings: one method for the series, but the
    earlier run's published numbers change (a helper's threshold change moved earlier Landsat areas by up
    to 0.08 km² without a word)."""
    import json

    from pipeline.config import load_config
    from pipeline.run import analysis_changed

    previous = tmp_path / "provenance.json"
    assert analysis_changed(previous, load_config()) is None  # no earlier run
    previous.write_text(json.dumps({"config_yaml": load_config().to_yaml()}))
    assert analysis_changed(previous, load_config()) is None
    note = analysis_changed(previous, load_config(analysis={"threshold": 150}))
    assert note.startswith("analysis settings differ from the last run into this folder (threshold 128 -> 150)")


def test_a_run_stopped_while_writing_its_outputs_leaves_no_build_and_says_what_is_stale(small_run, run_client, tmp_path,
                                                                                        monkeypatch):
    """A full disk (1) while the tables are written: the last tables stay, no half-written build is left
    to hold the space; (2) in the report: the new tables are in and the report and catalog are an
    earlier run's, which OUTPUTS-INCOMPLETE.txt says until a run finishes them."""
    import errno
    import shutil

    import pipeline.outputs.report
    import pipeline.run
    from pipeline.run import OUTPUTS_INCOMPLETE

    cfg, result = small_run
    out = tmp_path / "out"
    shutil.copytree(result.out, out)
    console = Console(file=open(tmp_path / "log.txt", "w"))
    tables_before, report_before = _files(out, "tables"), _files(out, "report")
    full = OSError(errno.ENOSPC, "No space left on device")

    def half_then_full(tables, folder):
        folder.mkdir(parents=True)
        (folder / "areas.csv").write_text("glacier_id\n1\n")
        raise full

    with monkeypatch.context() as m:
        m.setattr(pipeline.run, "write_tables", half_then_full)
        with pytest.raises(OSError, match="No space"):
            run_study(cfg, out, client=run_client, console=console)
    assert _files(out, "tables") == tables_before
    assert not [p.name for p in out.iterdir() if "incomplete" in p.name.lower()]  # no build, no notice: nothing replaced

    def report_full(*args, **kwargs):
        raise full

    with monkeypatch.context() as m:
        m.setattr(pipeline.outputs.report, "write_report", report_full)
        with pytest.raises(OSError, match="No space"):
            run_study(cfg, out, client=run_client, console=console)
    notice = (out / OUTPUTS_INCOMPLETE).read_text()
    assert "report/" in notice and "Run the same glacierwatch command again" in notice
    assert _files(out, "report") == report_before
    assert not [p.name for p in out.iterdir() if "incomplete" in p.name and p.name != OUTPUTS_INCOMPLETE]
    run_study(cfg, out, client=run_client, console=console)
    assert not (out / OUTPUTS_INCOMPLETE).exists() and (out / "report" / "index.html").is_file()


def test_update_redo_makes_a_stored_year_again_and_leaves_the_others(small_run, run_client, tmp_path):
    """Scenes published after a year was made (or reprocessed, or a damaged chunk): before, the way to
    make it again was a python one-liner in an error message."""
    import io
    import shutil

    from typer.testing import CliRunner

    from pipeline.cli import app

    cfg, result = small_run
    out = tmp_path / "out"
    shutil.copytree(result.out, out)
    before = _files(out, "store.zarr")
    log = io.StringIO()
    again = run_study(cfg, out, years=[2021], redo=[2021], client=run_client, console=Console(file=log, width=200), publish=False)
    said = log.getvalue()
    assert "sentinel-2: 2021 is made again (--redo)" in said and "landsat: 2021 is made again (--redo)" in said
    assert "sentinel-2: 0 new units written" not in said and "new units written, years [2021]" in said
    n = len(result.provenance["scenes"]["sentinel-2"]["2021"])
    assert f"sentinel-2: 2021 made again from {n} scenes (it was made from {n})" in said
    after = _files(out, "store.zarr")
    chunks_2020 = [k for k in before if "/probability/c/0/" in k]  # year index 0: 2020
    assert chunks_2020 and all(after[k] == before[k] for k in chunks_2020)
    pd.testing.assert_frame_equal(again.tables["areas"], result.tables["areas"])  # the same scenes: the same year
    config = Path(cfg.base_dir) / "config.yaml"
    absent = CliRunner().invoke(app, ["update", "-c", str(config), "--year", "2022", "--redo", "--out", str(out)])
    assert absent.exit_code == 2 and "nothing to make again" in " ".join(absent.output.split())
    # a chunk damaged after it was written (a disk, a copy): every later run stopped on a bare codec error
    chunk = out / "store.zarr" / "sentinel-2" / "probability" / "c" / "1" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(StoreError, match=r"sentinel-2/probability 2021 chunk \(0, 0\).*glacierwatch update --year 2021 --redo"):
        run_study(cfg, out, years=[2021], client=run_client, console=Console(file=log), publish=False)
    mended = run_study(cfg, out, years=[2021], redo=[2021], client=run_client, console=Console(file=log), publish=False)
    pd.testing.assert_frame_equal(mended.tables["areas"], result.tables["areas"])
