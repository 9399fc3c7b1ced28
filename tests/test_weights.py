"""Weights: safetensors round trips, the model card, and refusing what must not be loaded."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.model.dunet import DUNet, UNet
from pipeline.model.inputs import InputRecipe
from pipeline.model.weights import WeightsError, card_path, load_model, load_state, save_weights, sha256

RECIPE = InputRecipe(indices=("ndsi",), mean=(0.1,) * 7, std=(0.2,) * 7)


def trained_like(model):
    """Random non-default parameters and BN statistics, as after training."""
    torch.manual_seed(1)
    model.train()
    model(torch.randn(2, model.in_channels, 32, 32))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model.eval()


def test_fp32_round_trip_is_bit_exact_and_card_describes_it(tmp_path):
    model = trained_like(DUNet(7, base=4))
    card = save_weights(model, RECIPE, tmp_path / "s2.safetensors", training_data="synthetic", seed=3, metrics={"F1": 0.9})
    loaded, loaded_card = load_model(tmp_path / "s2.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded_card == card and card.architecture == "dunet" and card.base == 4 and card.recipe == RECIPE
    assert card.weights_sha256 == sha256(tmp_path / "s2.safetensors")
    assert json.loads(card_path(tmp_path / "s2.safetensors").read_text())["seed"] == 3


def test_fp16_shipping_loads_back_as_fp32_within_fp16_tolerance(tmp_path):
    model = trained_like(UNet(7, base=4))
    save_weights(model, RECIPE, tmp_path / "w.safetensors", dtype=torch.float16)
    loaded, card = load_model(tmp_path / "w.safetensors")
    assert card.weights_dtype == "float16"
    for key, value in model.state_dict().items():
        assert loaded.state_dict()[key].dtype == value.dtype
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=1e-3, atol=1e-4)


def test_pickled_checkpoint_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save(UNet(7, 4).state_dict(), path)
    with pytest.raises(WeightsError, match="model.safetensors is not a safetensors file"):
        load_state(UNet(7, 4), path)


def test_weights_of_another_architecture_or_width_are_refused_naming_both(tmp_path):
    save_weights(UNet(7, base=4), RECIPE, tmp_path / "unet.safetensors")
    with pytest.raises(WeightsError, match=r"holds unet \(base width 4.*model is dunet \(base width 4"):
        load_state(DUNet(7, base=4), tmp_path / "unet.safetensors")
    with pytest.raises(WeightsError, match=r"holds unet \(base width 4.*model is unet \(base width 8"):
        load_state(UNet(7, base=8), tmp_path / "unet.safetensors")


def test_weights_that_do_not_match_their_card_are_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(UNet(7, base=4), RECIPE, path)
    save_weights(UNet(7, base=4), RECIPE, tmp_path / "other.safetensors")
    path.write_bytes((tmp_path / "other.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(WeightsError, match="sha256"):
        load_model(path)
    card_path(path).unlink()
    with pytest.raises(WeightsError, match="no model card"):
        load_model(path)


def test_weights_trained_in_one_hemisphere_are_fed_the_other_mirrored_north_south():
    from pipeline.model.weights import TrainingDomain

    north = TrainingDomain(kind="world", latitude_deg=(30.0, 60.0))  # the shipped networks' world
    assert north.mirrors(-49.9) and north.mirrors(-0.5)  # Patagonia; the Ecuadorian Andes
    assert not north.mirrors(43.8) and not north.mirrors(0.0)
    assert TrainingDomain(kind="real", latitude_deg=(-55.0, -40.0)).mirrors(43.8)
    assert not TrainingDomain(kind="real", latitude_deg=(-55.0, 60.0)).mirrors(-49.9)  # trained on both: as they are
    assert not TrainingDomain(kind="synthetic").mirrors(-49.9)  # latitudes unknown: as they are
    assert north.merged(TrainingDomain(kind="real", latitude_deg=(-50.0, -45.0))).mirrors(-49.9) is False
