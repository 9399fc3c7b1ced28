"""Every predictor answers the same question the same way: glacier probability per pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.model.baselines import BandRatioPredictor, NDSIPredictor
from pipeline.model.dunet import DUNet, UNet
from pipeline.model.inputs import LANDSAT_BANDS, InputRecipe
from pipeline.model.predictor import Predictor, TorchPredictor

# Columns: clean ice, rock, bright snow-free soil, no-data. Bands: blue green red nir swir16 swir22.
TILE = np.array(
    [
        [0.60, 0.10, 0.30, np.nan],
        [0.55, 0.12, 0.32, 0.5],
        [0.50, 0.14, 0.35, 0.5],
        [0.40, 0.20, 0.40, 0.5],
        [0.05, 0.25, 0.20, 0.05],
        [0.04, 0.22, 0.18, 0.05],
    ],
    dtype=np.float32,
)[:, None, :]


def test_band_ratio_and_ndsi_thresholds():
    # red/swir16: 10, 0.56, 1.75; NDSI: 0.83, -0.35, 0.23
    np.testing.assert_array_equal(BandRatioPredictor().predict(TILE), [[1, 0, 0, 0]])
    np.testing.assert_array_equal(NDSIPredictor().predict(TILE), [[1, 0, 0, 0]])
    np.testing.assert_array_equal(BandRatioPredictor(threshold=1.5).predict(TILE), [[1, 0, 1, 0]])
    np.testing.assert_array_equal(NDSIPredictor(bands=LANDSAT_BANDS, threshold=0.2).predict(TILE), [[1, 0, 1, 0]])


def test_torch_predictor_pads_any_tile_and_returns_probability():
    recipe = InputRecipe(mean=(0.3,) * 6, std=(0.2,) * 6)
    predictor = TorchPredictor(DUNet(6, base=4), recipe, device="cpu")
    rng = np.random.default_rng(0)
    tile = rng.uniform(0, 1, (6, 21, 37)).astype(np.float32)
    tile[:, 0, 0] = np.nan
    probability = predictor.predict(tile)
    assert probability.shape == (21, 37) and probability.dtype == np.float32
    assert ((probability >= 0) & (probability <= 1)).all() and probability[0, 0] == 0
    assert not predictor.model.training


def test_all_predictors_share_the_protocol():
    recipe = InputRecipe(mean=(0.0,) * 6, std=(1.0,) * 6)
    for predictor in (BandRatioPredictor(), NDSIPredictor(), TorchPredictor(DUNet(6, 4), recipe, "cpu")):
        assert isinstance(predictor, Predictor)
        assert predictor.predict(TILE).shape == (1, 4)


@pytest.mark.parametrize("network", [UNet, DUNet])
def test_half_on_a_cpu_runs_bf16_where_the_cpu_has_it_and_fp32_where_it_has_not(network, monkeypatch):
    """`half` on a CPU: bf16 autocast where the CPU has bf16 instructions (probed as below), close to
    fp32 (deformable blocks stay fp32 inside); the very fp32 forward where it has none (emulated bf16
    would be slower)."""
    torch.manual_seed(0)
    recipe = InputRecipe(mean=(0.3,) * 6, std=(0.2,) * 6)
    model = network(6, base=8)
    tile = np.random.default_rng(1).uniform(0, 1, (6, 48, 64)).astype(np.float32)
    fp32 = TorchPredictor(model, recipe, device="cpu").predict(tile)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    bf16 = TorchPredictor(model, recipe, device="cpu", half=True)
    assert bf16.half and bf16.autocast_dtype == torch.bfloat16
    p = bf16.predict(tile)
    assert p.dtype == np.float32 and not np.array_equal(p, fp32)  # it did run in bf16
    assert np.abs(p - fp32).max() < 0.05

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    without = TorchPredictor(model, recipe, device="cpu", half=True)
    assert not without.half and without.autocast_dtype is None
    np.testing.assert_array_equal(without.predict(tile), fp32)


def test_the_shipped_network_maps_no_glacier_in_rock_beside_a_no_data_wedge():
    """A real tile's swath edge (or a cloud gap in a composite) is no data inside the tile. Filled with
    the training mean (0 after normalisation, a bright pixel) it made the shipped Sentinel-2 network map
    44 % of the rock within 4 px of the gap as glacier here (40 % on a helper's scene over the Ötztal
    outlines); each gap pixel now takes its nearest valid pixel's inputs, as the tile's margins take
    mirrored ones."""
    from scipy.ndimage import distance_transform_edt

    from pipeline.config import SHIPPED_WEIGHTS
    from pipeline.model.weights import load_model

    model, card = load_model(SHIPPED_WEIGHTS / "sentinel-2.safetensors")
    predictor = TorchPredictor(model, card.recipe, device="cpu")
    size = 256
    rows, cols = np.mgrid[:size, :size]
    elevation = (3000 + 3.0 * rows + 40 * np.sin(cols / 15.0)).astype(np.float32)
    gy, gx = np.gradient(elevation, 10.0)
    terrain = {"elevation": elevation, "slope": np.degrees(np.arctan(np.hypot(gx, gy))).astype(np.float32)}
    ice, rock = (0.8, 0.8, 0.75, 0.6, 0.02, 0.01), (0.2, 0.22, 0.25, 0.3, 0.35, 0.3)
    tile = np.where((cols < 60)[None], np.array(ice)[:, None, None], np.array(rock)[:, None, None]).astype(np.float32)
    tile += np.random.default_rng(0).normal(0, 0.02, tile.shape).astype(np.float32)
    wedge = cols > size - 60 + rows // 3
    tile[:, wedge] = np.nan
    p = predictor.predict(tile, terrain)
    beside = (distance_transform_edt(~wedge) <= 4) & ~wedge
    assert beside.sum() > 600 and (p[beside] >= 0.5).mean() < 0.01
    assert (p[:, :50] >= 0.5).mean() > 0.99 and (p[wedge] == 0).all()
