"""From config to weights and an accuracy table: samples, labels, `glacierwatch train`."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from shapely.geometry import box
from typer.testing import CliRunner

from catalog.grid import TargetGrid
from pipeline.cli import app
from pipeline.model.weights import load_model
from pipeline.training.labels import program_labels
from pipeline.training.samples import cut_samples, sample_size_for


def _cube(height: int, width: int, years=(2016, 2017)) -> xr.Dataset:
    rng = np.random.default_rng(0)
    y = 4_850_000 - 5 - 10 * np.arange(height)
    x = 700_005 + 10 * np.arange(width)
    return xr.Dataset(
        {
            "reflectance": (("year", "band", "y", "x"), rng.uniform(0.05, 0.3, (len(years), 6, height, width)).astype(np.float32)),
            "elevation": (("y", "x"), np.full((height, width), 4000.0, np.float32)),
            "slope": (("y", "x"), np.full((height, width), 10.0, np.float32)),
        },
        coords={"year": list(years), "band": ["B02", "B03", "B04", "B08", "B11", "B12"], "y": y, "x": x},
        attrs={"crs": "EPSG:32644", "transform": (10.0, 0.0, 700_000.0, 0.0, -10.0, 4_850_000.0)},
    )


def test_samples_tile_the_whole_region_with_the_last_ones_shifted_inwards():
    cube = _cube(80, 100)
    labels = xr.zeros_like(cube.reflectance.isel(band=0), dtype=np.uint8)
    samples = cut_samples(cube, labels, [2017], sample_size=64, crop_size=32)
    assert [o[1:] for o in samples.origins] == [(0, 0), (0, 36), (16, 0), (16, 36)]
    assert all(r.shape == (6, 64, 64) for r in samples.reflectance)
    assert sample_size_for((80, 100), 1024, 32) == 64


def test_program_labels_are_inventory_outlines_that_look_like_ice(tmp_path):
    cube = _cube(40, 40, years=(2016,))
    refl = cube.reflectance.values
    refl[0, :, :20, :] = np.array([0.5, 0.5, 0.45, 0.3, 0.03, 0.02])[:, None, None]  # ice in the top half
    cube["reflectance"] = (cube.reflectance.dims, refl)
    outline = gpd.GeoDataFrame({"glacier_id": [1]}, geometry=[box(700_000, 4_849_800, 700_200, 4_850_000)], crs=32644)
    outline.to_file(tmp_path / "inv.gpkg")
    grid = TargetGrid(32644, 10.0, (700_000.0, 4_849_600.0, 700_400.0, 4_850_000.0))  # the cube's 40 x 40 px
    labels = program_labels(tmp_path / "inv.gpkg", cube, grid, ("B02", "B03", "B04", "B08", "B11", "B12")).values[0]
    # Outline covers rows 0-19, cols 0-19; ice covers rows 0-19: the label is their intersection.
    assert labels[:20, :20].all() and labels.sum() == 400


@pytest.mark.slow
def test_train_writes_weights_logs_and_an_accuracy_table(tmp_path, small_study_area):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "synthetic": {"path": str(small_study_area.root)},
                "region": {"bbox": list(small_study_area.spec.bbox())},
                "training": {"sample_size": 512, "crop_size": 128, "batch_size": 8},
            }
        )
    )
    out = tmp_path / "training"
    result = CliRunner().invoke(
        app, ["train", "-c", str(config), "--out", str(out), "--architecture", "unet", "--base", "4", "--epochs", "2", "--variants", "2"]
    )
    assert result.exit_code == 0, result.output
    folder = out / "sentinel-2"
    model, card = load_model(folder / "sentinel-2-unet.safetensors")
    assert card.recipe.channel_names == ("B02", "B03", "B04", "B08", "B11", "B12", "ndsi", "ndwi", "relative_elevation", "slope")
    assert "2016-2020" in card.training_data and card.metrics["held_out_all_IoU"] > 0.5
    log = pd.read_csv(folder / "training_log.csv")
    assert list(log.epoch) == [1, 2] and log.train_loss.iloc[1] < log.train_loss.iloc[0]
    accuracy = pd.read_csv(folder / "accuracy.csv")
    assert set(accuracy.model) == {"unet", "band_ratio", "ndsi", "persistence"} and set(accuracy.zone) == {"all", "debris"}
    persistence = accuracy[(accuracy.model == "persistence") & (accuracy.zone == "all")]
    assert (persistence.IoU > 0.8).all() and (persistence.IoU < 1.0).all(), persistence  # glaciers change a little each year
    assert set(accuracy.year) == {2021, 2022}
    unet = accuracy[(accuracy.model == "unet") & (accuracy.zone == "all")]
    assert (unet.IoU > 0.5).all(), unet


def test_train_refuses_what_it_cannot_use_before_building_any_composite(tmp_path, small_study_area, monkeypatch):
    """No truth to score on, or an inventory that cannot be read: said before the composites (on a real
    region a season of downloads), not after them (an audit saw a .prj-less inventory fail after 2016-2022)."""
    import shutil

    from pipeline.training import from_config

    monkeypatch.setattr(from_config, "yearly_cube", lambda *a, **k: pytest.fail("composites built before the inputs were checked"))
    area = tmp_path / "area"
    shutil.copytree(small_study_area.root, area, ignore=shutil.ignore_patterns("truth"))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"synthetic": {"path": str(area)}, "region": {"bbox": list(small_study_area.spec.bbox())}}))
    result = CliRunner().invoke(app, ["train", "-c", str(config), "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "no truth at" in result.output and "train-world" in result.output, result.output
    assert result.output.startswith("error:") and len(result.output.strip().splitlines()) == 1, result.output

    with pytest.warns(UserWarning, match="crs"):
        gpd.GeoDataFrame({"glacier_id": [1]}, geometry=[box(0, 0, 1, 1)]).to_file(tmp_path / "inv.shp")  # no CRS
    config.write_text(yaml.safe_dump({"synthetic": {"path": str(small_study_area.root)}, "region": {"bbox": list(small_study_area.spec.bbox())},
                                      "inventory": {"path": str(tmp_path / "inv.shp")}, "training": {"labels": "inventory"}}))
    result = CliRunner().invoke(app, ["train", "-c", str(config), "--out", str(tmp_path / "t")])
    assert result.exit_code != 0 and "has no CRS" in result.output, result.output
    # an inventory beside the region: labels without a glacier pixel trained a network that maps no ice (IoU 0, exit 0)
    inventory = gpd.read_parquet(small_study_area.root / "inventory" / "glaciers.parquet")
    inventory.to_crs(4326).translate(xoff=2.0).to_frame("geometry").assign(glacier_id=inventory.glacier_id.values).to_parquet(
        tmp_path / "beside.parquet")
    config.write_text(yaml.safe_dump({"synthetic": {"path": str(small_study_area.root)}, "region": {"bbox": list(small_study_area.spec.bbox())},
                                      "inventory": {"path": str(tmp_path / "beside.parquet")}, "training": {"labels": "inventory"}}))
    result = CliRunner().invoke(app, ["train", "-c", str(config), "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "has no outline in the region" in result.output, result.output
    assert not (tmp_path / "t").exists()
    # a folder that holds a training: its weights (which a store may have been made with) are never overwritten
    (tmp_path / "old" / "sentinel-2").mkdir(parents=True)
    (tmp_path / "old" / "sentinel-2" / "sentinel-2-unet.safetensors").write_bytes(b"weights a store was made with")
    result = CliRunner().invoke(app, ["train", "-c", str(config), "--out", str(tmp_path / "old")])
    assert result.exit_code == 2 and "already holds a training (sentinel-2-unet.safetensors)" in result.output, result.output
    assert (tmp_path / "old" / "sentinel-2" / "sentinel-2-unet.safetensors").read_bytes() == b"weights a store was made with"
    result = CliRunner().invoke(app, ["train-world", "--sensor", "sentinel-2", "--out", str(tmp_path / "old")])
    assert result.exit_code == 2 and "or --resume to go on" in " ".join(result.output.split()), result.output


def test_train_on_a_region_without_truth_scores_glaciers_it_never_trained_on(tmp_path, small_study_area):
    """`train` on a real region (program labels, no truth) was refused for want of a synthetic truth, though
    README and the run's refusals sent users to it (a helper's training audit). It trains with the eastern
    fifth of the glaciers left out of the loss and scores on them in the held-out years, beside band ratio,
    NDSI and persistence, and can fine-tune given weights, whose domain its card keeps."""
    import shutil

    area = tmp_path / "area"
    shutil.copytree(small_study_area.root, area, ignore=shutil.ignore_patterns("truth"))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "synthetic": {"path": str(area)}, "region": {"bbox": list(small_study_area.spec.bbox())},
        "years": {"start": 2019, "end": 2022},
        "training": {"labels": "inventory", "architecture": "unet", "base": 4, "epochs": 1, "variants": 1,
                     "sample_size": 256, "crop_size": 128, "test_years": [2022]}}))
    out = tmp_path / "training"
    result = CliRunner().invoke(app, ["train", "-c", str(config), "--sensor", "landsat", "--out", str(out)])
    assert result.exit_code == 0, result.output
    weights = out / "landsat" / "landsat-unet.safetensors"
    _, card = load_model(weights)
    assert "glaciers held out of training (the eastern 20 % of the inventory's" in card.training_data
    assert {"baseline_band_ratio_all_IoU", "baseline_ndsi_all_IoU", "baseline_persistence_all_IoU"} <= set(card.metrics)
    accuracy = pd.read_csv(out / "landsat" / "accuracy.csv")
    assert set(accuracy.model) == {"unet", "band_ratio", "ndsi", "persistence"} and set(accuracy.year) == {2022}
    from pipeline.config import load_config
    from pipeline.glaciers.inventory import read_inventory
    from pipeline.training.from_config import held_out_zone

    cfg = load_config(config)
    zone, ids = held_out_zone(read_inventory(cfg.inventory_path()), cfg.grid("landsat"), cfg.analysis.glacier_buffer_m)
    scored = accuracy[(accuracy.model == "ndsi") & (accuracy.zone == "all")].n_pixels.iloc[0]
    assert 0 < scored <= zone.sum() < zone.size / 2 and len(ids) >= 1  # only the held-out glaciers' zones
    # a fine-tune of those weights keeps their recipe and their domain
    tuned = CliRunner().invoke(app, ["train", "-c", str(config), "--sensor", "landsat", "--out", str(tmp_path / "tuned"),
                                     "--init-weights", str(weights)])
    assert tuned.exit_code == 0, tuned.output
    _, tuned_card = load_model(tmp_path / "tuned" / "landsat" / "landsat-unet.safetensors")
    assert tuned_card.recipe == card.recipe and f"fine-tuned from {weights.name}" in tuned_card.training_data
    assert tuned_card.domain.regions == card.domain.regions


def test_the_held_out_glaciers_are_the_regions_not_the_inventorys(small_study_area):
    """An inventory of a whole range (RGI 13 runs to ~104 E; the region sits at 84 E): its easternmost fifth lay
    off the grid and the training failed after the composites (a reviewer's case). The region's are chosen."""
    from shapely.affinity import translate

    from pipeline.config import load_config
    from pipeline.glaciers.inventory import read_inventory
    from pipeline.training.from_config import held_out_zone

    cfg = load_config(None, synthetic={"path": str(small_study_area.root)}, region={"bbox": list(small_study_area.spec.bbox())})
    inventory = read_inventory(cfg.inventory_path())
    far = inventory.to_crs(4326).assign(glacier_id=inventory.glacier_id + 1000)
    far["geometry"] = [translate(g, xoff=16.0) for g in far.geometry]
    whole_range = pd.concat([inventory.to_crs(4326), far], ignore_index=True)
    zone, ids = held_out_zone(whole_range, cfg.grid("landsat"), 100.0)
    assert zone.any() and all(i < 1000 for i in ids) and len(ids) == max(1, round(len(inventory) * 0.2))
