"""`glacierwatch predict` on band files a user already has: the grid, the encoding, no data, errors.

The scene is written here: 64 x 64 px of 10 m bands and 32 x 32 px of 20 m SWIR bands in UTM
(EPSG:32645), as Sentinel-2 L2A DNs (reflectance x 10^4, nodata 0). Columns 0-31 are snow/ice
(0.9/0.9/0.9/0.72/0.01/0.01, real icefield values), columns 32-63 rock (0.2/0.22/0.25/0.3/0.35/0.3).
By hand: ice has red/SWIR16 = 90 and NDSI = 0.98, rock 0.71 and -0.23; on the 10 m grid the
bilinear SWIR16 of column 31 is 0.75 x 0.01 + 0.25 x 0.35 = 0.095 (ratio 9.5: ice) and of
column 32 0.265 (ratio 0.94: rock), so both thresholds split the scene exactly at column 32.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from conftest import tiny_weights
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.inference.predict import NODATA, encode, predict_scene
from pipeline.inference.scene_inputs import PredictError

runner = CliRunner()
CRS = "EPSG:32645"
ORIGIN = (500_000.0, 4_840_000.0)
ICE = (0.9, 0.9, 0.9, 0.72, 0.01, 0.01)
ROCK = (0.2, 0.22, 0.25, 0.3, 0.35, 0.3)
NAMES = ("B02", "B03", "B04", "B08", "B11", "B12")
BLUE_HOLES = [(5, 5), (40, 40)]
SWIR_HOLE_20M = (slice(10, 14), slice(20, 24))  # 10 m rows 20-27, cols 40-47; inside for sure: 22-25, 42-45


def _write(path, data, resolution, nodata=0, crs=CRS):
    height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype=data.dtype,
                       crs=crs, transform=from_origin(*ORIGIN, resolution, resolution), nodata=nodata) as dst:
        dst.write(data, 1)
    return path


def _scene(folder, size=64, texture=None, nodata=0, crs=CRS):
    """The six band files of the test scene (10 m bands, 20 m SWIR); `texture`: per-pixel reflectance added;
    `nodata`: what the files declare (None: nothing, as the JP2 files of a SAFE)."""
    paths = []
    for i, name in enumerate(NAMES):
        swir = i >= 4
        n = size // 2 if swir else size
        refl = np.empty((n, n), np.float32)
        refl[:, : n // 2], refl[:, n // 2 :] = ICE[i], ROCK[i]
        if texture is not None:
            refl += texture[i][:n, :n]
        dn = np.clip(np.rint(refl / 1e-4), 1, 65535).astype(np.uint16)
        if name == "B02":
            for r, c in BLUE_HOLES:
                dn[r, c] = 0
        if name == "B11":
            dn[SWIR_HOLE_20M] = 0
        paths.append(_write(folder / f"{name}.tif", dn, 20.0 if swir else 10.0, nodata=nodata, crs=crs))
    return paths


def _dem(folder, size=64, crs=CRS):
    """A DEM in EPSG:4326 over the scene: a plane rising 1000 m per 0.01 deg of latitude from 4000 m."""
    left, bottom, right, top = transform_bounds(crs, "EPSG:4326", ORIGIN[0], ORIGIN[1] - size * 10, ORIGIN[0] + size * 10, ORIGIN[1])
    step = 0.0001  # ~11 m of latitude, ~8 m of longitude
    west, north = left - 20 * step, top + 20 * step
    ny, nx = int((top - bottom) / step) + 40, int((right - left) / step) + 40
    lat = north - (np.arange(ny) + 0.5) * step
    elevation = np.repeat((4000.0 + (lat - bottom) / 0.01 * 1000.0)[:, None], nx, axis=1).astype(np.float32)
    path = folder / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=nx, height=ny, count=1, dtype="float32", crs="EPSG:4326",
                       transform=from_origin(west, north, step, step), nodata=-9999.0) as dst:
        dst.write(elevation, 1)
    return path, bottom


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile, src.scales, src.tags()


def test_encode_reserves_255_for_no_data():
    p = np.array([0.0, 0.5, 0.998, 1.0, np.nan, 0.3], np.float32)
    valid = np.array([True, True, True, True, True, False])
    assert encode(p, valid).tolist() == [0, 128, 254, 254, 0, 255]


@pytest.mark.parametrize("classifier", ["band-ratio", "ndsi"])
def test_thresholds_split_ice_from_rock_on_the_first_bands_grid(tmp_path, classifier):
    bands = _scene(tmp_path)
    out = tmp_path / "out" / "prob.tif"
    result = predict_scene(bands, "sentinel-2", out, classifier=classifier)
    data, profile, scales, tags = _read(out)
    with rasterio.open(bands[0]) as first:
        assert (profile["crs"], profile["transform"], data.shape) == (first.crs, first.transform, first.shape)
    assert profile["dtype"] == "uint8" and profile["nodata"] == NODATA
    assert scales == (pytest.approx(1 / 255),) and tags["classifier"] == classifier

    nodata = np.zeros((64, 64), bool)
    for r, c in BLUE_HOLES:
        nodata[r, c] = True
    assert (data[22:26, 42:46] == NODATA).all()  # SWIR16's 20 m hole, away from its bilinear edge
    nodata[22:26, 42:46] = True
    hole_edge = np.zeros_like(nodata)
    hole_edge[20:28, 40:48] = True
    hole_edge &= ~nodata
    assert (data[nodata] == NODATA).all()
    assert ((data == NODATA) & ~nodata & ~hole_edge).sum() == 0
    keep = ~nodata & ~hole_edge
    assert (data[:, :32][keep[:, :32]] == 254).all()
    assert (data[:, 32:][keep[:, 32:]] == 0).all()
    n_valid = int((data != NODATA).sum())
    assert result.n_valid == n_valid and result.n_glacier == 32 * 64 - 1
    assert result.warnings == ()


def test_output_is_a_valid_cog(tmp_path):
    cogeo = pytest.importorskip("rio_cogeo.cogeo")
    out = tmp_path / "prob.tif"
    predict_scene(_scene(tmp_path), "sentinel-2", out, classifier="ndsi")
    valid, errors, _ = cogeo.cog_validate(str(out))
    assert valid, errors
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files left


def _contrasted_unet(path):
    """A base-4 U-Net with variance-preserving random weights and logits of std ~2 (as in
    tests/test_inference.py): PyTorch's default init gives a near-constant map that would hide seams."""
    import torch

    from pipeline.model.dunet import UNet
    from pipeline.model.inputs import InputRecipe
    from pipeline.model.weights import save_weights

    torch.manual_seed(0)
    recipe = InputRecipe(bands=NAMES, indices=("ndsi",), terrain=("elevation", "slope"),
                         mean=(0.5,) * 6 + (0.0, 4500.0, 20.0), std=(0.1,) * 6 + (0.5, 800.0, 10.0))
    model = UNet(recipe.n_channels, 4).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        logit = model(torch.randn(1, recipe.n_channels, 128, 128))
        scale = 2.0 / float(logit.std())
        model.head.weight.mul_(scale)
        model.head.bias.mul_(scale).sub_(float(logit.median()) * scale)
    save_weights(model, recipe, path)
    return path


def test_blocks_and_halo_reproduce_the_whole_scene(tmp_path, monkeypatch):
    """Block-wise reads and network windows (bounded memory) give the same map as one pass."""
    rng = np.random.default_rng(3)
    texture = rng.uniform(-0.05, 0.05, (6, 256, 256)).astype(np.float32)
    bands = _scene(tmp_path, size=256, texture=texture)
    predict_scene(bands, "sentinel-2", tmp_path / "whole.tif", classifier="band-ratio")
    predict_scene(bands, "sentinel-2", tmp_path / "blocks.tif", classifier="band-ratio", block=48)
    assert np.array_equal(_read(tmp_path / "whole.tif")[0], _read(tmp_path / "blocks.tif")[0])

    weights = _contrasted_unet(tmp_path / "unet.safetensors")
    dem, _ = _dem(tmp_path, size=256)
    said = []
    common = dict(dem=dem, classifier="unet", weights=weights, device="cpu", warn=said.append)
    predict_scene(bands, "sentinel-2", tmp_path / "unet-whole.tif", **common)
    # U-Net halo 96 px: 3 x 3 blocks of 96 px; the middle one reads 96 + 2 x 96 = 288 -> 256 px (the
    # scene), more than window + 2 x halo = 240, so predict_block cuts it into 2 x 2 windows.
    import pipeline.inference.tile_forward

    forwards = []
    whole_pass = pipeline.inference.tile_forward._predict_whole
    monkeypatch.setattr(pipeline.inference.tile_forward, "_predict_whole",
                        lambda b, t, **kw: forwards.append(b.shape[-2:]) or whole_pass(b, t, **kw))
    predict_scene(bands, "sentinel-2", tmp_path / "unet-blocks.tif", block=96, window=48, **common)
    assert len(forwards) == 16 and max(max(f) for f in forwards) == 224
    whole, blocks = _read(tmp_path / "unet-whole.tif")[0], _read(tmp_path / "unet-blocks.tif")[0]
    assert np.array_equal(whole == NODATA, blocks == NODATA)
    assert np.abs(whole.astype(int) - blocks.astype(int)).max() <= 1
    assert said == ["unet.safetensors has no training domain in its card: it is unknown what it was trained on"] * 2
    assert np.percentile(whole[whole != NODATA], 95) - np.percentile(whole[whole != NODATA], 5) > 50  # a real map


def test_dem_in_another_crs_lands_on_the_grid_with_its_slope(tmp_path):
    from pipeline.inference.scene_inputs import Grid, read_terrain

    dem, bottom = _dem(tmp_path)
    with rasterio.open(_scene(tmp_path)[0]) as first, rasterio.open(dem) as src:
        grid = Grid(first.crs, first.transform, first.height, first.width)
        terrain = read_terrain(src, grid, 0, 0, 64, 64, ("elevation", "slope"))
    # The pixel (32, 32) centre in lon/lat, and the plane's value there.
    x, y = first.transform * (32.5, 32.5)
    _, (lat,) = warp_transform(CRS, "EPSG:4326", [x], [y])
    assert terrain["elevation"][32, 32] == pytest.approx(4000 + (lat - bottom) / 0.01 * 1000, abs=0.5)
    # 1000 m per 0.01 deg of latitude (1111.0 m at 43.7 deg N): atan(1000 / 1111) = 42.0 deg.
    metres_per_deg = 111_132.954 - 559.822 * math.cos(2 * math.radians(lat))
    expected = math.degrees(math.atan(1000 / (0.01 * metres_per_deg)))
    assert np.isfinite(terrain["slope"]).all()  # edges included: the DEM is read one pixel wider
    assert terrain["slope"][32, 32] == pytest.approx(expected, abs=0.5)


@pytest.mark.parametrize("terrain", [("elevation", "slope"), ("relative_elevation", "slope")])
def test_dunet_runs_with_a_dem_in_another_crs_and_warns_about_synthetic_weights(tmp_path, terrain):
    import torch

    from pipeline.model.dunet import DUNet
    from pipeline.model.inputs import InputRecipe
    from pipeline.model.weights import TrainingDomain, save_weights

    torch.manual_seed(0)
    recipe = InputRecipe(bands=NAMES, indices=("ndsi",), terrain=terrain,
                         mean=(0.3,) * 6 + (0.0, 4200.0 if terrain[0] == "elevation" else 0.0, 20.0),
                         std=(0.2,) * 6 + (0.5, 500.0, 10.0))
    weights = tmp_path / "dunet.safetensors"
    save_weights(DUNet(recipe.n_channels, 4).eval(), recipe, weights,
                 domain=TrainingDomain(kind="synthetic", sensors=("sentinel-2",), resolution_m=10))
    bands = _scene(tmp_path)
    dem, _ = _dem(tmp_path)
    said = []
    result = predict_scene(bands, "sentinel-2", tmp_path / "p.tif", dem=dem, weights=weights, device="cpu", warn=said.append)
    data, profile, _, tags = _read(tmp_path / "p.tif")
    assert len(said) == 1 and "synthetic scenes" in said[0] and result.warnings == tuple(said)
    assert tags["weights_sha256"] and profile["transform"] == rasterio.open(bands[0]).transform
    assert (data[5, 5], data[40, 40]) == (NODATA, NODATA) and (data[22:26, 42:46] == NODATA).all()
    assert (data != NODATA).sum() == result.n_valid > 4000 and data[data != NODATA].max() <= 254


def test_cli_writes_the_map_and_says_what_it_found(tmp_path):
    bands = ",".join(str(p) for p in _scene(tmp_path))
    out = tmp_path / "prob.tif"
    result = runner.invoke(app, ["predict", "--sensor", "sentinel-2", "--bands", bands, "--classifier", "ndsi",
                                 "--scale", "1e-4", "--offset", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "ndsi: 50.8% of 4030 valid px" in result.output  # 2047 ice px of 4096 - 2 - 64 (8 x 8 SWIR hole)
    assert out.is_file()


def test_cli_warns_of_weights_trained_on_a_synthetic_area_only_not_of_the_shipped_world_weights(tmp_path):
    import json
    import shutil

    from pipeline.config import SHIPPED_WEIGHTS

    bands = ",".join(str(p) for p in _scene(tmp_path))
    dem, _ = _dem(tmp_path)
    shipped = runner.invoke(app, ["predict", "--sensor", "sentinel-2", "--bands", bands, "--dem", str(dem),
                                  "--out", str(tmp_path / "p.tif")])
    assert shipped.exit_code == 0, shipped.output
    assert not [line for line in shipped.output.splitlines() if line.startswith("warning:")], shipped.output
    # the same network, its card saying it saw one synthetic study area only
    weights = tmp_path / "area.safetensors"
    shutil.copy(SHIPPED_WEIGHTS / "sentinel-2.safetensors", weights)
    card = json.loads((SHIPPED_WEIGHTS / "sentinel-2.json").read_text())
    card["weights_file"], card["domain"] = weights.name, {"kind": "synthetic", "regions": ["an embedded area"]}
    weights.with_suffix(".json").write_text(json.dumps(card))
    result = runner.invoke(app, ["predict", "--sensor", "sentinel-2", "--bands", bands, "--dem", str(dem),
                                 "--weights", str(weights), "--out", str(tmp_path / "q.tif")])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "area.safetensors was trained on synthetic scenes" in warning[0]


def test_cli_half_runs_the_network_in_bf16_on_a_cpu_with_bf16_and_fp32_says_fp32(tmp_path, monkeypatch):
    import torch

    from pipeline.inference import predictor_cache

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)  # as on a CPU that has them
    built = []
    load = predictor_cache.load_predictor

    def recording(*args):
        built.append(load(*args))
        return built[-1]

    monkeypatch.setattr(predictor_cache, "load_predictor", recording)
    bands = ",".join(str(p) for p in _scene(tmp_path))
    dem, _ = _dem(tmp_path)
    maps, dtypes = {}, {}
    for flag in ("--half", "--fp32"):
        built.clear()
        out = tmp_path / f"{flag[2:]}.tif"
        result = runner.invoke(app, ["predict", "--sensor", "sentinel-2", "--bands", bands, "--dem", str(dem), flag,
                                     "--out", str(out)])
        assert result.exit_code == 0, result.output
        with rasterio.open(out) as src:
            maps[flag] = src.read(1).astype(int)
        dtypes[flag] = {p.autocast_dtype for p in built}
    assert dtypes == {"--half": {torch.bfloat16}, "--fp32": {None}}
    valid = maps["--fp32"] != NODATA
    assert (valid == (maps["--half"] != NODATA)).all()
    assert np.abs(maps["--half"] - maps["--fp32"])[valid].max() <= 0.05 * 254


@pytest.mark.parametrize(("scale", "offset", "message"), [
    ("1", "0", "the files hold DNs"),  # median brightest 9000
    ("1e-8", "0", "look like reflectance already"),
    ("1e-4", "0.7", "darkest band of 99% of pixels is above 0.71"),  # as Landsat C2 L2 DNs read with 1e-4
])
def test_cli_refuses_a_wrong_scale_in_one_line(tmp_path, scale, offset, message):
    bands = ",".join(str(p) for p in _scene(tmp_path))
    result = runner.invoke(app, ["predict", "--sensor", "sentinel-2", "--bands", bands, "--classifier", "ndsi",
                                 "--scale", scale, "--offset", offset, "--out", str(tmp_path / "p.tif")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:") and message in result.output and len(result.output.splitlines()) == 1
    assert not (tmp_path / "p.tif").exists() and not list(tmp_path.glob(".p.tif*"))


def test_dns_of_files_declaring_no_nodata_take_0_as_no_data_and_say_so(tmp_path):
    said = []
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    undeclared = predict_scene(_scene(tmp_path / "a", nodata=None), "sentinel-2", tmp_path / "a.tif", classifier="ndsi",
                               warn=said.append)
    declared = predict_scene(_scene(tmp_path / "b"), "sentinel-2", tmp_path / "b.tif", classifier="ndsi")
    # the blue holes (DN 0 in B02) and SWIR16's 20 m hole (DN 0 in B11) are no data as if declared
    assert np.array_equal(_read(tmp_path / "a.tif")[0], _read(tmp_path / "b.tif")[0])
    assert undeclared.n_valid == declared.n_valid < 64 * 64 - 2 - 16
    assert len(said) == 1 and said[0].startswith("bands B02, B03, B04, B08, B11, B12 declare no nodata: DN 0")
    assert declared.warnings == ()


def test_the_scenes_quality_layer_makes_clouds_no_data_and_keeps_snow(tmp_path):
    bands = _scene(tmp_path)
    scl = np.full((32, 32), 5, np.uint8)  # 20 m SCL: bare ground ...
    scl[:, :16] = 11  # ... snow and ice kept
    scl[4:10, 4:10] = 9  # high cloud over the ice: 10 m rows/cols 8-19
    scl[20:24, 20:26] = 3  # cloud shadow on the rock: rows 40-47, cols 40-51
    quality = _write(tmp_path / "SCL.tif", scl, 20.0)  # nodata 0: SCL's own "no data"
    plain = predict_scene(bands, "sentinel-2", tmp_path / "plain.tif", classifier="ndsi")
    masked = predict_scene(bands, "sentinel-2", tmp_path / "masked.tif", classifier="ndsi", quality=quality)
    before, after = _read(tmp_path / "plain.tif")[0], _read(tmp_path / "masked.tif")[0]
    clouded = np.zeros((64, 64), bool)
    clouded[8:20, 8:20] = clouded[40:48, 40:52] = True
    assert (after[clouded] == NODATA).all()
    assert np.array_equal(after[~clouded], before[~clouded])  # snow/ice (class 11) and the rest as without it
    assert masked.n_valid == plain.n_valid - int((before[clouded] != NODATA).sum())
    assert _read(tmp_path / "masked.tif")[3]["quality"] == str(quality)


def test_landsat_qa_pixel_bits_and_the_wrong_layer_refused(tmp_path):
    bands = _scene(tmp_path)
    qa = np.full((32, 32), 21824, np.uint16)  # clear (QA_PIXEL of clear land)
    qa[0:6, 0:6] = 21824 | (1 << 3)  # the cloud bit: 10 m rows/cols 0-11
    qa_path = _write(tmp_path / "QA_PIXEL.tif", qa, 20.0, nodata=1)
    masked = predict_scene(bands, "landsat", tmp_path / "l.tif", scale=1e-4, classifier="ndsi", quality=qa_path)
    out = _read(tmp_path / "l.tif")[0]
    assert (out[:12, :12] == NODATA).all() and masked.n_valid == int((out != NODATA).sum()) > 3800
    with pytest.raises(ValueError, match="not Sentinel-2 SCL classes"):
        predict_scene(bands, "sentinel-2", tmp_path / "x.tif", classifier="ndsi", quality=qa_path)
    scl_path = _write(tmp_path / "SCL.tif", np.full((32, 32), 4, np.uint8), 20.0)
    with pytest.raises(ValueError, match="look like Sentinel-2 SCL classes"):
        predict_scene(bands, "landsat", tmp_path / "y.tif", classifier="ndsi", quality=scl_path)
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "y.tif").exists() and not list(tmp_path.glob(".*.tif*"))


def _constant_network(path, logit: float):
    """A Sentinel-2 U-Net without terrain whose head says `logit` everywhere (weights 0): p = sigmoid(logit)."""
    import torch

    from pipeline.model.dunet import UNet
    from pipeline.model.inputs import InputRecipe
    from pipeline.model.weights import save_weights

    recipe = InputRecipe(bands=NAMES, indices=("ndsi",), mean=(0.3,) * 6 + (0.0,), std=(0.2,) * 6 + (0.5,))
    model = UNet(recipe.n_channels, 4).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(logit)
    save_weights(model, recipe, path)
    return path


def test_a_network_that_misses_what_both_indices_call_ice_is_warned_about(tmp_path):
    bands = _scene(tmp_path)
    # the ice half (NDSI 0.98, red/SWIR16 90, NIR 0.72): both indices' ice, 32 x 64 px less the holes
    ndsi = predict_scene(bands, "sentinel-2", tmp_path / "ndsi.tif", classifier="ndsi")
    said = []
    blind = predict_scene(bands, "sentinel-2", tmp_path / "blind.tif", weights=_constant_network(tmp_path / "blind.safetensors", -20.0),
                          device="cpu", warn=said.append)
    assert blind.n_index_ice == ndsi.n_glacier and blind.n_index_ice_mapped == 0 and blind.n_glacier == 0
    assert [m for m in said if "maps 0% of the" in m and "compare with --classifier ndsi" in m]
    said.clear()
    seeing = predict_scene(bands, "sentinel-2", tmp_path / "all.tif", weights=_constant_network(tmp_path / "all.safetensors", 20.0),
                           device="cpu", warn=said.append)
    assert seeing.index_recall == 1.0 and not [m for m in said if "both call snow or ice" in m]
    assert ndsi.n_index_ice == 0  # the thresholds are not judged against themselves


def test_turbid_water_is_not_the_indices_ice(tmp_path):
    water = np.array([0.08, 0.1, 0.08, 0.04, 0.01, 0.01], np.float32)[:, None, None] * np.ones((6, 4, 4), np.float32)
    from pipeline.inference.predict import index_ice

    ice = np.array(ICE, np.float32)[:, None, None] * np.ones((6, 4, 4), np.float32)
    assert not index_ice(water, NAMES).any() and index_ice(ice, NAMES).all()


def test_an_offset_applied_twice_is_warned_about(tmp_path):
    said = []
    predict_scene(_scene(tmp_path), "sentinel-2", tmp_path / "p.tif", offset=-0.1, classifier="ndsi", warn=said.append)
    # Ice's SWIR 0.01 - 0.1 = -0.09 < -0.05 in columns 0-30 (column 31's bilinear SWIR is 0.095 - 0.1):
    # 31 x 64 - 1 = 1983 of 4030 valid pixels, 49 % (the rule: more than 5 %).
    assert len(said) == 1 and "offset looks applied twice" in said[0] and said[0].startswith("49% of pixels")


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path):
    paths = [str(p) for p in _scene(tmp_path)]
    missing = [*paths[:5], str(tmp_path / "nope.tif")]
    unet = tiny_weights("sentinel-2", tmp_path / "u.safetensors")
    cases = [
        (["--bands", ",".join(paths[:5])], "needs 6 files for sentinel-2"),
        (["--bands", ",".join(missing)], "nope.tif does not exist"),
        (["--bands", ",".join(paths)], "pass --dem"),
        (["--bands", ",".join(paths), "--classifier", "ndsi", "--weights", str(unet)], "--weights is for"),
        (["--bands", ",".join(paths), "--classifier", "dunet", "--weights", str(unet)], "hold a unet, not a dunet"),
        (["--bands", ",".join(paths), "--classifier", "svm"], "--classifier 'svm' is not known"),
        (["--bands", ",".join(paths), "--sensor", "modis"], "--sensor 'modis' is not known"),
        (["--bands", ",".join(paths), "--classifier", "ndsi", "--out", paths[0]], "is one of the inputs"),
        (["--bands", ",".join(paths), "--classifier", "ndsi", "--quality", str(tmp_path / "SCL.tif")], "--quality "),
        (["--bands", ",".join(paths), "--classifier", "ndsi", "--quality", paths[1]], "holds values up to 9000"),
    ]
    for args, message in cases:
        argv = ["predict", "--sensor", "sentinel-2", "--out", str(tmp_path / "p.tif"), *args]
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error:") and len(result.output.strip().splitlines()) == 1, result.output
        assert message in result.output and "Error:" not in result.output, (message, result.output)
    assert not (tmp_path / "p.tif").exists()


def test_a_band_in_another_crs_is_warped_onto_the_first_bands_grid(tmp_path):
    from rasterio.warp import calculate_default_transform, reproject

    bands = _scene(tmp_path)
    with rasterio.open(bands[2]) as red:  # B04 (red) rewritten in lon/lat
        transform, width, height = calculate_default_transform(red.crs, "EPSG:4326", red.width, red.height, *red.bounds)
        data = np.zeros((height, width), np.uint16)
        reproject(red.read(1), data, src_transform=red.transform, src_crs=red.crs, src_nodata=0,
                  dst_transform=transform, dst_crs="EPSG:4326", dst_nodata=0, resampling=rasterio.enums.Resampling.nearest)
    bands[2] = tmp_path / "B04-lonlat.tif"
    with rasterio.open(bands[2], "w", driver="GTiff", width=width, height=height, count=1, dtype="uint16",
                       crs="EPSG:4326", transform=transform, nodata=0) as dst:
        dst.write(data, 1)
    predict_scene(bands, "sentinel-2", tmp_path / "p.tif", classifier="band-ratio")
    out, profile, _, _ = _read(tmp_path / "p.tif")
    assert profile["crs"] == CRS and out.shape == (64, 64)
    # Away from the ice/rock edge (a lon/lat pixel straddles it) and the scene's rim: the same split.
    assert (out[2:-2, 2:28][out[2:-2, 2:28] != NODATA] == 254).all()
    assert (out[2:-2, 36:-2][out[2:-2, 36:-2] != NODATA] == 0).all()
    assert (out[2:-2, 2:-2] != NODATA).sum() >= 60 * 60 - 2 - 64


def _shipped_s2():
    from pipeline.config import SHIPPED_WEIGHTS

    return SHIPPED_WEIGHTS / "sentinel-2.safetensors"


def test_a_dem_short_of_the_scene_is_warned_about_one_with_no_heights_there_refused(tmp_path):
    bands = _scene(tmp_path)
    dem, _ = _dem(tmp_path)
    with rasterio.open(dem) as src:
        heights, profile = src.read(1), src.profile
    half, none = tmp_path / "half.tif", tmp_path / "none.tif"
    west = heights.copy()
    west[:, heights.shape[1] // 2:] = -9999.0  # its no data over the scene's eastern half
    for path, data in ((half, west), (none, np.full_like(heights, -9999.0))):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, 1)
    said = []
    result = predict_scene(bands, "sentinel-2", tmp_path / "p.tif", dem=half, weights=_shipped_s2(), device="cpu",
                           warn=said.append)
    share = 1 - result.n_valid / 4030  # 4030: the bands' valid pixels (test_cli_writes_the_map_and_says_what_it_found)
    assert 0.3 < share < 0.7 and said == [f"--dem {half} has no elevation under {share:.0%} of the bands' valid pixels: "
                                          "written as no data (give a DEM that covers the scene)"]
    out = tmp_path / "new" / "sub" / "p.tif"
    with pytest.raises(PredictError, match="has no elevation under any of the bands' 4030 valid pixels"):
        predict_scene(bands, "sentinel-2", out, dem=none, weights=_shipped_s2(), device="cpu")
    assert not (tmp_path / "new").exists()  # the folders the failed run made are gone with it


def test_srtm_voids_a_dem_does_not_declare_are_no_data_and_said(tmp_path):
    bands = _scene(tmp_path)
    dem, _ = _dem(tmp_path)
    with rasterio.open(dem) as src:
        heights, profile = np.rint(src.read(1)).astype(np.int16), src.profile
    heights[: heights.shape[0] // 3] = -32768  # voids over the scene's northern part
    profile.update(dtype="int16", nodata=None)
    with rasterio.open(tmp_path / "srtm.tif", "w", **profile) as dst:
        dst.write(heights, 1)
    profile.update(nodata=-32768)
    with rasterio.open(tmp_path / "declared.tif", "w", **profile) as dst:
        dst.write(heights, 1)
    said = []
    common = dict(weights=_shipped_s2(), device="cpu")
    predict_scene(bands, "sentinel-2", tmp_path / "a.tif", dem=tmp_path / "srtm.tif", warn=said.append, **common)
    predict_scene(bands, "sentinel-2", tmp_path / "b.tif", dem=tmp_path / "declared.tif", warn=lambda m: None, **common)
    assert said[0] == f"--dem {tmp_path / 'srtm.tif'} declares no nodata: -32768, SRTM's void value, is taken as no data " \
                      "(declare it: gdal_edit.py -a_nodata)"
    undeclared, declared = _read(tmp_path / "a.tif")[0], _read(tmp_path / "b.tif")[0]
    assert np.array_equal(undeclared, declared) and (undeclared[:5] == NODATA).all()


def test_a_band_given_twice_is_refused(tmp_path):
    paths = _scene(tmp_path)
    with pytest.raises(PredictError, match=r"names .*B02.tif more than once"):
        predict_scene([paths[0], *paths[:5]], "sentinel-2", tmp_path / "p.tif", classifier="ndsi")


def test_a_missing_offset_is_found_where_the_scenes_ice_is_not_in_its_first_block(tmp_path):
    """The offset is judged on the first block whose snow and ice can tell (`_check_offset`), not on the
    first block alone: here the first 64 px block is snow-free rock, the ice lies east of it."""
    size = 128
    for i, name in enumerate(NAMES):
        refl = np.empty((size, size), np.float32)
        refl[:, : size // 2], refl[:, size // 2 :] = ROCK[i], ICE[i]
        dn = np.rint((refl + 0.1) / 1e-4).astype(np.uint16)  # baseline 04.00's +1000 DN, left in
        _write(tmp_path / f"{name}.tif", dn, 10.0)
    said = []
    predict_scene([tmp_path / f"{n}.tif" for n in NAMES], "sentinel-2", tmp_path / "p.tif", classifier="ndsi", block=64,
                  warn=said.append)
    assert len(said) == 1 and "an offset looks missing" in said[0], said


def test_a_southern_scene_goes_through_northern_weights_mirrored_and_says_so(tmp_path):
    """The same pixels at 45 deg N and at 46 deg S (UTM 45N / 45S): weights trained on northern scenes take the
    southern one mirrored north-south (`TrainingDomain.mirrors`), said in the result, the COG's tags and the CLI."""
    from pipeline.model.weights import TrainingDomain, load_model, save_weights

    rng = np.random.default_rng(3)
    texture = rng.uniform(-0.05, 0.05, (6, 128, 128)).astype(np.float32)
    model, card = load_model(_contrasted_unet(tmp_path / "plain.safetensors"))
    weights = tmp_path / "northern.safetensors"
    save_weights(model, card.recipe, weights, domain=TrainingDomain(kind="world", latitude_deg=(30.0, 60.0)))
    from pipeline.inference import predictor_cache

    predictor_cache.load_predictor.cache_clear()
    maps = {}
    for hemisphere, crs in (("north", CRS), ("south", "EPSG:32745")):
        folder = tmp_path / hemisphere
        folder.mkdir()
        bands = _scene(folder, size=128, texture=texture, crs=crs)
        dem, _ = _dem(folder, size=128, crs=crs)
        result = predict_scene(bands, "sentinel-2", folder / "p.tif", dem=dem, weights=weights, device="cpu")
        assert result.mirrored_north_south == (hemisphere == "south")
        maps[hemisphere], _, _, tags = _read(folder / "p.tif")
        assert ("mirrored_north_south" in tags) == (hemisphere == "south")
    assert np.abs(maps["north"].astype(int) - maps["south"].astype(int)).max() > 10  # the same pixels, fed mirrored
    assert predictor_cache.load_predictor.cache_info().misses == 1  # fed mirrored or not, one network loaded
    bands = ",".join(str(p) for p in sorted((tmp_path / "south").glob("B*.tif")))
    said = runner.invoke(app, ["predict", "--sensor", "sentinel-2", "--bands", bands, "--dem", str(tmp_path / "south" / "dem.tif"),
                               "--weights", str(weights), "--scale", "1e-4", "--offset", "0", "--out", str(tmp_path / "cli.tif")])
    assert said.exit_code == 0, said.output
    assert "fed to it mirrored north-south" in " ".join(said.output.split())
