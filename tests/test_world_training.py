"""Training on the world: disjoint splits, calibration worked by hand, the area bias per glacier,
inputs a regional DEM shift leaves alone, the deformable placements, and a tiny end-to-end run."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.model.dunet import ARCHITECTURES, ConvBlock, DeformableBlock
from pipeline.model.inputs import fit_normalisation
from pipeline.model.predictor import TorchPredictor
from pipeline.training.fit import TrainingConfig
from pipeline.training.world import (
    TEST_SEEDS,
    TRAIN_SEEDS,
    VALID_SEEDS,
    area_bias_by_size,
    area_matching_shift,
    expected_calibration_error,
    fit_temperature,
    fold_temperature,
    glacier_area_bias,
    glacier_area_errors,
    small_glacier_weights,
    train_on_world,
    unfold_temperature,
    world_recipe,
    world_sample,
)


def test_temperature_recovers_the_overconfidence_it_was_given():
    # Labels drawn from sigmoid(z); a model reporting 3 z is over-confident by T = 3.
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 2.0, 200_000)
    y = rng.random(z.size) < 1.0 / (1.0 + np.exp(-z))
    assert fit_temperature(3.0 * z, y) == pytest.approx(3.0, rel=0.03)
    assert fit_temperature(z, y) == pytest.approx(1.0, rel=0.03)


def test_expected_calibration_error_by_hand():
    # Bin [0.2, 0.267): p 0.25 x4, observed 1 of 4 -> 0; bin of 0.9: p 0.9 x 2, observed 0 of 2 -> 0.9.
    p = np.array([0.25, 0.25, 0.25, 0.25, 0.9, 0.9])
    y = np.array([1, 0, 0, 0, 0, 0])
    assert expected_calibration_error(p, y) == pytest.approx((4 * 0.0 + 2 * 0.9) / 6)
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0


def test_median_scene_area_bias_by_hand():
    from pipeline.training.world import median_scene_area_bias

    scenes = [(np.array([-1.0, 0.5, 2.0]), np.array([0, 1, 1])),  # 2 mapped / 2 glacier: 0
              (np.array([-2.0, -1.0, 1.0]), np.array([1, 1, 1])),  # 1 / 3: -2/3
              (np.array([1.0, 1.0, 1.0]), np.array([1, 0, 0]))]  # 3 / 1: +2
    assert median_scene_area_bias(scenes, 0.0) == pytest.approx(0.0)
    assert median_scene_area_bias(scenes, 1.5) == pytest.approx(0.5)  # 3/2 - 1, 2/3 - 1, 3/1 - 1
    assert np.isnan(median_scene_area_bias([], 0.0))


def test_area_matching_shift_maps_the_true_number_of_pixels():
    z = np.array([-3.0, -1.0, -0.5, 0.2, 2.0])
    y = np.array([0, 1, 1, 1, 0])  # three glacier pixels, but only two logits >= 0
    b = area_matching_shift(z, y)
    assert b == pytest.approx(0.75)  # halfway between -1.0 (stays out) and -0.5 (the third pixel from the top)
    assert np.count_nonzero(z + b >= 0) == 3
    assert area_matching_shift(z, np.zeros(5)) == 0.0


def test_folded_temperature_divides_the_logits():
    torch.manual_seed(0)
    model = ARCHITECTURES["unet"](3, 4).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        fold_temperature(model, 2.5, shift=0.4)
        after = model(x)
    torch.testing.assert_close(after, (before + 0.4) / 2.5, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        unfold_temperature(model, 2.5, shift=0.4)
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_area_bias_per_glacier_by_hand():
    label = np.zeros((20, 30), bool)
    label[2:6, 2:7] = True  # 20 px
    label[10:18, 20:25] = True  # 40 px
    mapped = label.copy()
    mapped[2:6, 7] = True  # +4 px beside the first glacier: +20 %
    mapped[10:18, 20] = False  # -8 px of the second: -20 %
    mapped[0, 29] = True  # far from both: nobody's
    valid = np.ones(label.shape, bool)
    assert glacier_area_bias(mapped, label, valid) == pytest.approx([0.2, -0.2])
    assert glacier_area_bias(np.zeros_like(label), np.zeros_like(label), valid) == []
    errors = glacier_area_errors(mapped, label, valid)
    assert errors["true_px"].tolist() == [20, 40]
    assert errors["area_bias"].tolist() == pytest.approx([0.2, -0.2])


def test_small_glaciers_and_their_edges_weigh_more_in_the_loss():
    label = np.zeros((40, 40), bool)
    label[2:6, 2:7] = True  # 20 px of 30 m: 0.018 km², sqrt(0.5 / 0.018) = 5.3, capped at 4
    label[10:38, 10:38] = True  # 784 px: 0.71 km², above 0.5 km²
    label[20:22, 2:4] = True  # 4 px: 0.0036 km², capped at 4
    weights = small_glacier_weights(label, 30.0, 0.5)
    assert weights[4, 4] == 4.0 and weights[4, 8] == 4.0  # the glacier and its 2-px edge
    assert weights[4, 10] == 1.0 and weights[20, 20] == 1.0 and weights[0, 39] == 1.0
    assert small_glacier_weights(label, 30.0, 0.5, max_weight=10.0)[4, 4] == pytest.approx((0.5 / 0.018) ** 0.5)
    assert (small_glacier_weights(label, 30.0, 0.0) == 1.0).all()
    assert weights.dtype == np.float32


def test_area_bias_by_glacier_size_by_hand():
    bias = pd.DataFrame({"model": ["unet"] * 5 + ["ndsi"],
                         "glacier_km2": [0.02, 0.05, 0.3, 2.0, 8.0, 0.05],
                         "area_bias": [-1.0, -0.5, 0.02, -0.04, 0.01, 0.3]})
    table = area_bias_by_size(bias).set_index(["model", "class"])
    smallest = table.loc[("unet", pd.Interval(0.0, 0.1))]
    assert (smallest.glaciers, smallest.median_bias, smallest["within_3%"]) == (2, -0.75, 0.0)
    assert table.loc[("unet", pd.Interval(1.0, 5.0)), "within_3%"] == 0.0  # -4 % is outside +-3 %
    assert table.loc[("unet", pd.Interval(5.0, np.inf)), "within_3%"] == 1.0
    assert table.loc[("ndsi", pd.Interval(0.0, 0.1)), "median_bias"] == 0.3
    assert len(table) == 5  # no row for a class without glaciers (0.5-1 km2)


@pytest.fixture(scope="module")
def small_scene():
    return world_sample(3, "landsat", 96, "procedural")


def test_bare_ice_is_glacier_less_debris_and_snow(small_scene):
    bare = small_scene.bare_ice
    assert bare.any() and not (bare & ~small_scene.label).any() and not (bare & small_scene.debris).any()
    assert bare.sum() < small_scene.label.sum()  # the accumulation zone's snow and firn are not bare ice


def test_inputs_do_not_move_with_a_regional_dem_shift(small_scene):
    recipe = fit_normalisation(world_recipe("landsat"), [(small_scene.reflectance, small_scene.terrain)])
    base, valid = recipe.build_inputs(small_scene.reflectance, small_scene.terrain)
    for shift in (-1000.0, 1000.0):
        terrain = {**small_scene.terrain, "elevation": small_scene.terrain["elevation"] + np.float32(shift)}
        shifted, valid2 = recipe.build_inputs(small_scene.reflectance, terrain)
        assert (valid2 == valid).all()
        np.testing.assert_allclose(shifted, base, atol=2e-4)
    assert "elevation" not in recipe.channel_names


def test_deformable_placements():
    def deformable_levels(model):
        stages = [*model.encoder, model.bottom]
        return [i for i, s in enumerate(stages) if isinstance(s[0], DeformableBlock)]

    assert deformable_levels(ARCHITECTURES["dunet"](6, 4)) == [0, 1, 2, 3, 4]
    assert deformable_levels(ARCHITECTURES["dunet-deep"](6, 4)) == [3, 4]
    assert deformable_levels(ARCHITECTURES["dunet-shallow"](6, 4)) == [0, 1]
    assert deformable_levels(ARCHITECTURES["unet"](6, 4)) == []
    deep = ARCHITECTURES["dunet-deep"](6, 4)
    # decoder[0] works at level 3 (the deepest skip), decoder[3] at full resolution
    assert isinstance(deep.decoder[0][0], DeformableBlock) and isinstance(deep.decoder[3][0], ConvBlock)
    # the all-stage variant keeps the shipped tensor names
    assert set(ARCHITECTURES["dunet"](6, 4).state_dict()) >= {"encoder.0.0.deform.weight", "decoder.3.1.offset.bias"}


def test_splits_never_meet():
    assert TRAIN_SEEDS + 10_000 <= VALID_SEEDS and VALID_SEEDS + 10_000 <= TEST_SEEDS


def test_dark_ice_goes_to_the_training_scenes_only(tmp_path, monkeypatch):
    """Validation and test stay the cards' world, so a card trained with dark ice is calibrated and
    scored on the same scenes as every other card."""
    from pipeline.training import world

    drawn = []

    def recorded(sensor, first_seed, n, size, terrain, dark_ice_share=0.0):
        drawn.append((first_seed, dark_ice_share))
        if len(drawn) == 3:
            raise InterruptedError  # the splits are all this test needs
        return []

    monkeypatch.setattr(world, "draw_split", recorded)
    with pytest.raises(InterruptedError):
        train_on_world("landsat", tmp_path, n_train=2, n_valid=1, n_test=1, size=64, dark_ice_share=0.4)
    assert drawn == [(TRAIN_SEEDS, 0.4), (VALID_SEEDS, 0.0), (TEST_SEEDS, 0.0)]


@pytest.mark.slow
def test_tiny_world_run_writes_calibrated_weights_and_a_table_with_baselines(tmp_path):
    config = TrainingConfig(architecture="dunet-deep", base=4, crop_size=64, variants=1, focal_alpha=0.5,
                            max_epochs=1, test_fraction=0.0, loss_threshold=0.0)
    run = train_on_world("landsat", tmp_path, n_train=2, n_valid=1, n_test=2, size=64, config=config,
                         compare=[config.model_copy(update={"architecture": "unet"})])
    assert set(run.accuracy.model) == {"dunet-deep", "unet", "band_ratio", "ndsi"}
    assert set(run.accuracy.zone) >= {"all"}
    card = json.loads(run.weights.with_suffix(".json").read_text())
    assert card["architecture"] == "dunet-deep" and card["domain"]["kind"] == "world"
    assert card["recipe"]["terrain"] == ["slope", "relative_elevation"]
    assert math.isfinite(card["metrics"]["calibration_shift"])
    # one validation scene: the shift is its own area-matching shift, so it maps that scene's true area
    assert card["metrics"]["calibration_valid_scene_area_bias_median_after"] == pytest.approx(0.0, abs=1e-3)
    assert card["metrics"]["calibration_valid_scene_area_bias_median_before"] == pytest.approx(
        card["metrics"]["calibration_valid_area_bias_before"])  # one scene: pooled and per scene agree
    t = card["metrics"]["calibration_temperature"]
    assert 0.05 <= t <= 20 and math.isfinite(card["metrics"]["calibration_ece_after"])
    assert (tmp_path / "accuracy.csv").is_file() and (tmp_path / "area_bias.csv").is_file()
    from catalog.synthetic.world.draw import real_data_present

    relief = "real and procedural relief" if real_data_present() else "procedural relief and glaciers only"
    assert relief in card["training_data"]  # the card says what the world was drawn from
    from pipeline.model.weights import load_model

    model, loaded = load_model(run.weights)
    scene = world_sample(TEST_SEEDS, "landsat", 64, "procedural")
    probability = TorchPredictor(model, loaded.recipe).predict(scene.reflectance, scene.terrain)
    assert probability.shape == (64, 64) and 0.0 <= probability.min() and probability.max() <= 1.0


def test_area_bias_leaves_out_slivers_below_the_minimum_mapping_unit():
    label = np.zeros((10, 10), bool)
    label[1:5, 1:5] = True  # 16 px
    label[8, 8] = True  # a 1 px sliver
    valid = np.ones_like(label)
    assert glacier_area_bias(np.zeros_like(label), label, valid, min_px=4) == [-1.0]
    assert glacier_area_bias(np.zeros_like(label), label, valid) == [-1.0, -1.0]


def test_fine_tuning_keeps_the_weights_recipe_and_starts_from_their_raw_logits(tmp_path):
    """A fine-tune starts from the network the loss trained (calibration undone) and feeds it the
    weights' own input recipe, not one refitted on the new scenes."""
    from pipeline.model.weights import load_model
    from pipeline.training.world import starting_network

    config = TrainingConfig(architecture="unet", base=4, crop_size=64, variants=1, focal_alpha=0.5,
                            max_epochs=1, test_fraction=0.0, loss_threshold=0.0)
    first = train_on_world("landsat", tmp_path / "first", n_train=2, n_valid=1, n_test=1, size=64, config=config)
    shipped, card = load_model(first.weights)
    start, recipe, line = starting_network(first.weights, config, world_recipe("landsat"))
    assert recipe == card.recipe and card.weights_sha256[:12] in line
    scene = world_sample(TEST_SEEDS, "landsat", 64, "procedural")
    x = torch.from_numpy(recipe.build_inputs(scene.reflectance, scene.terrain)[0])[None]
    t, shift = card.metrics["calibration_temperature"], card.metrics["calibration_shift"]
    with torch.no_grad():
        torch.testing.assert_close((start.eval()(x) + shift) / t, shipped(x), rtol=1e-4, atol=1e-4)

    tuned = train_on_world("landsat", tmp_path / "tuned", n_train=3, n_valid=1, n_test=1, size=64, config=config,
                           init_weights=first.weights)
    tuned_card = load_model(tuned.weights)[1]
    assert tuned_card.recipe == card.recipe and "fine-tuned from" in tuned_card.training_data
    # what the parent saw stays in the domain (it was replaced by the fine-tune's scenes), and every
    # checkpoint says it (without one, an epoch file of a synthetic-only training ran on real scenes unrefused)
    parent, own = card.domain, tuned_card.domain
    assert own.kind == "world" and own.latitude_deg[0] <= parent.latitude_deg[0] and own.latitude_deg[1] >= parent.latitude_deg[1]
    assert load_model(tmp_path / "tuned" / "unet" / "epoch_001.safetensors")[1].domain == own
    with pytest.raises(ValueError, match="holds unet base 4"):
        train_on_world("landsat", tmp_path / "wrong", n_train=1, n_valid=1, n_test=1, size=64,
                       config=config.model_copy(update={"base": 8}), init_weights=first.weights)
    # the advice names what to change: the sensor, or the --terrain of the weights (helper's audit: it said
    # "pass the weights' terrain channels" for Sentinel-2 weights given to a Landsat training)
    with pytest.raises(ValueError, match=r"trained on bands \['blue'.*has \['B02'.*give weights of this --sensor"):
        starting_network(first.weights, config, world_recipe("sentinel-2"))
    with pytest.raises(ValueError, match="pass --terrain slope,relative_elevation"):
        starting_network(first.weights, config, world_recipe("landsat", ("relative_elevation", "slope")))


def test_each_area_sample_enters_training_area_repeat_times(tmp_path, monkeypatch):
    """At 30 m the embedded area gives few samples; `area_repeat` gives each of them that many
    places in training, and the card's training data says so."""
    from types import SimpleNamespace

    from pipeline.training import world

    stand_in = world_sample(VALID_SEEDS + 50, "landsat", 64, "procedural")  # for one sample of the area's years
    monkeypatch.setattr(world, "area_samples", lambda *args, **kwargs: [stand_in])
    seen = {}

    class Trained(Exception):
        pass

    def train(inputs, labels, *args, training_data, domain, **kwargs):
        seen.update(labels=labels, training_data=training_data, domain=domain)
        raise Trained

    monkeypatch.setattr(world, "train", train)
    area = SimpleNamespace(years=[2016, 2017, 2018], training=SimpleNamespace(test_years=[2018]),
                           region=SimpleNamespace(name="demo-area", bbox=(84.0, 43.7, 84.1, 43.8)))
    config = TrainingConfig(architecture="unet", base=4, crop_size=64, variants=1, max_epochs=1, test_fraction=0.0)
    with pytest.raises(Trained):
        train_on_world("landsat", tmp_path, n_train=2, n_valid=1, n_test=1, size=64, config=config, area=area, area_repeat=3)
    assert len(seen["labels"]) == 2 + 3
    assert sum(np.array_equal(label, stand_in.label) for label in seen["labels"]) == 3
    assert "+ 1 samples of the embedded area demo-area (2016-2017, truth labels), each 3 times" in seen["training_data"]
    assert seen["domain"].kind == "mixed" and "demo-area (synthetic)" in seen["domain"].regions  # on every checkpoint


@pytest.mark.parametrize(("option", "message"), [(["--area-repeat", "0"], "--area-repeat 0: use 1 or more"),
                                                 (["--dark-ice-share", "1.5"], "--dark-ice-share 1.5: use a share within 0..1")])
def test_bad_training_options_are_refused_before_anything_is_drawn(tmp_path, option, message):
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["train-world", *option, "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "out").exists()


def test_a_fine_tune_keeps_what_the_parent_network_saw_in_its_domain():
    """Weights trained on the embedded area alone, fine-tuned on two world scenes, read "world" and got
    past the refusal of synthetic-only weights on real scenes (a helper's training audit)."""
    from pipeline.model.weights import TrainingDomain

    area = TrainingDomain(kind="synthetic", sensors=("landsat",), resolution_m=30.0, elevation_m=(3000.0, 5000.0),
                          latitude_deg=(43.7, 43.8), regions=("yilian-habirga-synthetic",))
    world = TrainingDomain(kind="world", sensors=("landsat",), resolution_m=30.0, elevation_m=(3800.0, 6000.0),
                           latitude_deg=(45.0, 55.6), regions=("glacierwatch training world",))
    merged = world.merged(area)
    assert merged.kind == "mixed" and merged.regions == ("yilian-habirga-synthetic", "glacierwatch training world")
    assert merged.elevation_m == (3000.0, 6000.0) and merged.latitude_deg == (43.7, 55.6) and merged.resolution_m == 30.0
    assert world.merged(None) == world and world.merged(world) == world
