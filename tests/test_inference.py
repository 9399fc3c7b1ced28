"""Chunked inference: seams, one model load per process, and the run into the region store."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.ndimage import gaussian_filter

from catalog.halo_layout import HaloLayout
from catalog.terrain import _block_terrain
from pipeline.inference import predictor_cache, tile_forward
from pipeline.inference import region as inference
from pipeline.model.dunet import DUNet, UNet
from pipeline.model.inputs import SENTINEL2_BANDS, InputRecipe
from pipeline.model.predictor import TorchPredictor
from pipeline.model.weights import load_model, save_weights

TOLERANCE = 1 / 255


def _cube(ny: int, nx: int, years=(2020,), seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    refl = np.stack(
        [np.stack([gaussian_filter(rng.random((ny, nx)), 3) * 0.6 + 0.05 * rng.random((ny, nx)) for _ in range(6)]) for _ in years]
    ).astype(np.float32)
    refl[:, :, 50:60, 70:90] = np.nan  # a no-data patch
    elevation = (gaussian_filter(rng.random((ny, nx)), 20) * 3000 + 3000).astype(np.float32)
    slope = (gaussian_filter(rng.random((ny, nx)), 5) * 40).astype(np.float32)
    return xr.Dataset(
        {"reflectance": (("year", "band", "y", "x"), refl), "elevation": (("y", "x"), elevation), "slope": (("y", "x"), slope)},
        coords={"year": list(years), "band": list(SENTINEL2_BANDS), "y": np.arange(ny), "x": np.arange(nx)},
    )


def _recipe() -> InputRecipe:
    return InputRecipe(
        indices=("ndsi",),
        terrain=("elevation", "slope"),
        mean=(0.3,) * 6 + (0.0, 4500.0, 20.0),
        std=(0.2,) * 6 + (0.5, 800.0, 10.0),
    )


def _tiny_model(architecture: str, path, calibrate_on: xr.Dataset | None = None, seed: int = 0):
    """A base-4 network with variance-preserving random weights (PyTorch's default init lets far
    context fade, which would hide seams), BN statistics and deformable offsets that are not
    trivial, and a head scaled so logits are centred with std 2: probabilities are not saturated.
    """
    torch.manual_seed(seed)
    recipe = _recipe()
    model = {"unet": UNet, "dunet": DUNet}[architecture](recipe.n_channels, 4).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
            if hasattr(m, "offset"):
                m.offset.weight.normal_(0, 0.05)
                m.offset.bias.normal_(0, 0.3)
                torch.nn.init.kaiming_normal_(m.deform.weight, nonlinearity="relu")
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.weight.shape[0] != 18:
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        cube = calibrate_on if calibrate_on is not None else _cube(400, 560)
        terrain = {t: cube[t].values for t in recipe.terrain}
        x, _ = recipe.build_inputs(cube.reflectance.values[0], terrain)
        x = np.pad(x, ((0, 0), (0, -x.shape[1] % 16), (0, -x.shape[2] % 16)), mode="reflect")
        logit = model(torch.from_numpy(x)[None]).numpy()
        scale = 2.0 / float(logit.std())
        model.head.weight.mul_(scale)
        model.head.bias.mul_(scale).sub_(float(np.median(logit)) * scale)
    save_weights(model, recipe, path)
    return path


def _whole_image(cube: xr.Dataset, weights) -> np.ndarray:
    model, card = load_model(weights)
    predictor = TorchPredictor(model, card.recipe, "cpu")
    terrain = {t: cube[t].values for t in card.recipe.terrain}
    return np.stack([predictor.predict(cube.reflectance.values[i], terrain) for i in range(cube.sizes["year"])])


def _worst_seam(cube: xr.Dataset, weights, halo: int, chunk: int) -> float:
    whole = _whole_image(cube, weights)
    mosaic = inference.probability_cube(cube.chunk({"y": chunk, "x": chunk}), weights, halo, device="cpu")
    assert mosaic.dims == ("year", "y", "x") and mosaic.dtype == np.float32
    diff = np.abs(mosaic.compute(scheduler="threads").values - whole)
    return float(diff.max())  # the whole image, edges included: tiles sit on the 16-px lattice


@pytest.mark.parametrize(
    ("architecture", "shape", "chunks", "halo", "too_small"),
    [
        pytest.param("unet", (400, 560), (128, 160, 192), inference.HALO_BY_ARCHITECTURE["unet"], 80, marks=pytest.mark.slow),
        pytest.param("dunet", (720, 880), (192,), inference.HALO_BY_ARCHITECTURE["dunet"], 288, marks=pytest.mark.slow),
    ],
)
def test_chunk_seams_are_invisible(tmp_path, architecture, shape, chunks, halo, too_small):
    cube = _cube(*shape)
    weights = _tiny_model(architecture, tmp_path / f"{architecture}.safetensors")
    for chunk in chunks:
        assert _worst_seam(cube, weights, halo, chunk) <= TOLERANCE, (architecture, chunk)
    # the measured halo is (about) the smallest that works: less shows seams
    assert _worst_seam(cube, weights, too_small, chunks[0]) > TOLERANCE


def test_a_region_narrower_than_the_halo_is_inferred_whole_along_that_axis(tmp_path):
    """96 rows against a 128 px halo (a small Landsat area against the D-UNet's 336 px): one tile
    high (tiles are at least as wide as the halo), its context clipped to the region; across, tiles
    of 128 px (the last 16 px wide) each see their neighbours' 128 px."""
    cube = _cube(96, 400)
    weights = _tiny_model("unet", tmp_path / "unet.safetensors", calibrate_on=cube)
    mosaic = inference.probability_cube(cube.chunk({"y": 64, "x": 128}), weights, halo=128, device="cpu")
    assert mosaic.data.chunks[1:] == ((96,), (128, 128, 128, 16))
    assert np.abs(mosaic.compute(scheduler="threads").values - _whole_image(cube, weights)).max() <= TOLERANCE


def test_half_reaches_a_cpus_forward_passes_as_bf16_where_the_cpu_has_it(tmp_path, monkeypatch):
    """`inference.half: true` on CPU workers (probability_cube(half=True)): each task's predictor runs
    bf16 where the CPU has bf16 instructions, close to the default's fp32 map."""
    import torch

    cube = _cube(128, 192)
    weights = _tiny_model("unet", tmp_path / "unet.safetensors", calibrate_on=cube)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    fp32 = inference.probability_cube(cube.chunk({"y": 64, "x": 64}), weights, halo=16, device="cpu")
    bf16 = inference.probability_cube(cube.chunk({"y": 64, "x": 64}), weights, halo=16, device="cpu", half=True)
    a, b = fp32.compute(scheduler="sync").values, bf16.compute(scheduler="sync").values
    assert not np.array_equal(a, b) and np.abs(a - b).max() < 0.05


def test_a_local_cpu_run_is_told_of_bf16_once_and_only_when_it_could_use_it(monkeypatch):
    import torch

    from pipeline.config import load_config
    from pipeline.run import cpu_half_note

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert "`inference.half: true`" in cpu_half_note(load_config())
    assert cpu_half_note(load_config(inference={"half": False})) is None  # the user chose
    assert cpu_half_note(load_config(inference={"half": True})) is None
    assert cpu_half_note(load_config(cluster={"kind": "slurm"})) is None  # its workers' CPUs are not this one
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert cpu_half_note(load_config()) is None  # emulated bf16 would be slower
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cpu_half_note(load_config()) is None


def test_model_is_loaded_once_per_process_across_tasks(tmp_path):
    cube = _cube(256, 384, years=(2019, 2020, 2021))
    weights = _tiny_model("unet", tmp_path / "unet.safetensors", calibrate_on=cube)
    predictor_cache.load_predictor.cache_clear()
    probability = inference.probability_cube(cube.chunk({"y": 64, "x": 64}), weights, halo=16, device="cpu")
    n_tasks = probability.data.npartitions
    assert n_tasks == 3 * 4 * 6
    probability.compute(scheduler="threads", num_workers=4)
    info = predictor_cache.load_predictor.cache_info()
    assert info.misses == 1 and info.hits == n_tasks - 1


def test_years_of_one_block_are_batched_like_single_predictions(tmp_path):
    cube = _cube(160, 192, years=(2019, 2020))
    weights = _tiny_model("unet", tmp_path / "unet.safetensors", calibrate_on=cube)
    batched = inference.probability_cube(cube, weights, halo=0, device="cpu", years_per_block=2)
    assert batched.data.chunks[0] == (2,)
    np.testing.assert_allclose(batched.compute(scheduler="sync").values, _whole_image(cube, weights), atol=1e-5)


def test_infer_to_store_writes_each_year_once_and_matches_whole_image(small_study_area, tmp_path):
    from pipeline.config import load_config
    from pipeline.inference.yearly_cube import yearly_cube
    from pipeline.store import RegionStore

    area = small_study_area
    # the central 70 % of the area (390 x 510 px): 2 x 2 units of 256 px cross seams both ways, at
    # under half the reads of the whole area's 3 x 3
    w, s, e, n = area.spec.bbox()
    bbox = [w + 0.15 * (e - w), s + 0.15 * (n - s), e - 0.15 * (e - w), n - 0.15 * (n - s)]
    cfg = load_config(None, synthetic={"path": str(area.root)}, region={"bbox": bbox}, years={"start": 2020, "end": 2021})
    years = list(cfg.years)
    cube = yearly_cube(cfg, "sentinel-2", years=years, chunks=256).compute()
    weights = _tiny_model("unet", tmp_path / "unet.safetensors", calibrate_on=cube.isel(year=[0]))
    url = str(tmp_path / "store.zarr")

    summary = inference.infer_to_store(cfg, "sentinel-2", weights, url, chunk_size=256)
    store = RegionStore.open(url)
    n_units = len(store.units("sentinel-2", years[0]))
    assert n_units == 4  # seams are crossed, across and down
    assert summary["years"] == {y: n_units for y in years}
    assert set(summary["static"]) == {"dem", "slope", "aspect", "glacier_id"}

    card = inference.read_card(weights)
    assert store.metadata["weights_sha256"] == {"sentinel-2": card.weights_sha256}
    records = store.year_records("sentinel-2")
    for y in years:
        assert records[y]["scene_ids"] == sorted(cube.attrs["scene_ids"][str(y)])
        assert records[y]["config_hash"] == cfg.digest()

    ds = store.open_dataset("sentinel-2")
    stored = ds.probability.values.astype(np.float32) / 255
    whole = _whole_image(cube, weights)
    assert stored.shape == whole.shape
    m = inference.HALO_BY_ARCHITECTURE["unet"]
    interior = (slice(None), slice(m, -m), slice(m, -m))
    assert np.abs(stored - whole)[interior].max() <= TOLERANCE + 0.5 / 255  # + uint8 rounding
    np.testing.assert_allclose(ds.dem.values, cube.elevation.values)
    # the index masks of the same composite, written by the same unit tasks (never 255 once inferred)
    from pipeline.store import encode_indices

    expected = np.stack([encode_indices(cube.reflectance.sel(year=y).values, cube.band.values) for y in years])
    np.testing.assert_array_equal(ds.indices.values, expected)
    assert ((expected & 1) > 0).any() and ((expected & 2) > 0).any() and (expected == 0).any()

    hashes = {p: store.fs.cat_file(p) for p in store.fs.find(store.root) if "/c/" in p}
    again = inference.infer_to_store(cfg, "sentinel-2", weights, url, chunk_size=256)
    assert again["years"] == {y: 0 for y in years} and again["static"] == []
    assert {p: store.fs.cat_file(p) for p in store.fs.find(store.root) if "/c/" in p} == hashes  # a rerun touches no chunk

    from pipeline.store import IncompatibleStoreError

    other = _tiny_model("unet", tmp_path / "other.safetensors", calibrate_on=cube.isel(year=[0]), seed=1)
    with pytest.raises(IncompatibleStoreError, match="weights sha256"):
        inference.infer_to_store(cfg, "sentinel-2", other, url, chunk_size=256)

    # a worker whose writes this process never sees (a node without the store's filesystem): said, not published
    from pipeline.store import StoreError
    from pipeline.store.manifest import Manifest

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Manifest, "mark_done", lambda self, unit, data_sha256: None)
        with pytest.raises(StoreError, match=r"sentinel-2: the workers finished units \(4 of 2020, 4 of 2021\) that this process"):
            inference.infer_to_store(cfg, "sentinel-2", weights, str(tmp_path / "elsewhere.zarr"), chunk_size=256)

    # the same network trained on southern scenes only: this northern area goes through it mirrored north-south
    from pipeline.model.weights import TrainingDomain

    model, _ = load_model(weights)
    southern = tmp_path / "southern.safetensors"
    save_weights(model, card.recipe, southern, domain=TrainingDomain(kind="world", latitude_deg=(-55.0, -40.0)))
    summary = inference.infer_to_store(cfg, "sentinel-2", southern, str(tmp_path / "mirrored.zarr"), chunk_size=256)
    assert summary["mirrored_north_south"] and not inference.infer_to_store(cfg, "sentinel-2", weights, url)["mirrored_north_south"]
    mirrored = RegionStore.open(str(tmp_path / "mirrored.zarr")).open_dataset("sentinel-2").probability.values.astype(np.float32) / 255
    fed = TorchPredictor(model, card.recipe, "cpu", mirror=True)
    expected = np.stack([fed.predict(cube.reflectance.values[i], {t: cube[t].values for t in card.recipe.terrain})
                         for i in range(len(years))])
    assert np.abs(mirrored - expected)[interior].max() <= TOLERANCE + 0.5 / 255
    assert np.abs(mirrored - whole)[interior].max() > 0.1
    records = RegionStore.open(str(tmp_path / "mirrored.zarr")).year_records("sentinel-2").values()
    assert {r["method"]["mirrored_north_south"] for r in records} == {True}  # each year says how the network was fed


def test_only_chunks_near_glaciers_are_inferred_the_rest_stored_as_not_glacier(small_study_area, tmp_path):
    import geopandas as gpd

    from catalog.tiling import glacier_pixel_mask, glacier_tiles
    from pipeline.config import load_config
    from pipeline.inference.yearly_cube import yearly_cube
    from pipeline.store import RegionStore

    area = small_study_area
    outlines = gpd.read_parquet(area.root / "inventory" / "glaciers.parquet")
    one = outlines.iloc[[0]]
    one.to_file(tmp_path / "one.gpkg")
    cfg = load_config(
        None, synthetic={"path": str(area.root)}, region={"bbox": list(area.spec.bbox())}, years={"start": 2021, "end": 2021},
        inventory=str(tmp_path / "one.gpkg"), tiling={"buffer_m": 0, "tile_px": 256},  # a sparse region's small tiles
    )
    cube = yearly_cube(cfg, "sentinel-2", years=[2021], chunks=256).compute()
    weights = _tiny_model("unet", tmp_path / "unet.safetensors", calibrate_on=cube)
    url = str(tmp_path / "store.zarr")

    summary = inference.infer_to_store(cfg, "sentinel-2", weights, url)
    assert RegionStore.open(url).chunk_size == 256  # the config's tile, not the store's default
    tiles = glacier_tiles(cfg.grid("sentinel-2"), one, 0, 256)
    assert 0 < tiles.n_tiles < tiles.n_tiles_total
    assert summary["tiles"]["inferred"] == tiles.n_tiles and summary["tiles"]["total"] == tiles.n_tiles_total
    store = RegionStore.open(url)
    assert store.pending_units("sentinel-2") == []  # the year is complete
    assert summary["years"] == {2021: tiles.n_tiles_total}
    stored = store.open_dataset("sentinel-2").probability.sel(year=2021).values.astype(np.float32) / 255
    whole = _whole_image(cube, weights)[0]
    m = inference.HALO_BY_ARCHITECTURE["unet"]
    for r, c in np.ndindex(tiles.mask.shape):
        window = (slice(r * 256, (r + 1) * 256), slice(c * 256, (c + 1) * 256))
        if not tiles.mask[r, c]:
            assert (stored[window] == 0).all()  # ice-free: not glacier, never inferred
    inner = np.zeros(stored.shape, bool)
    for r, c in tiles.tiles:
        inner[r * 256:(r + 1) * 256, c * 256:(c + 1) * 256] = True
    inner[:m], inner[-m:], inner[:, :m], inner[:, -m:] = False, False, False, False
    # inferred: the pixels within the glacier zones' 100 m (analysis.glacier_buffer_m; the tiling buffer is 0 here)
    zone = glacier_pixel_mask(cfg.grid("sentinel-2"), one, cfg.analysis.glacier_buffer_m)
    assert (inner & zone).any() and np.abs(stored - whole * zone)[inner].max() <= TOLERANCE + 0.5 / 255
    # the store keeps its glacier_id: inference alone with other outlines is refused too, writing nothing
    from pipeline.store import IncompatibleStoreError

    step = 0.0003 if one.crs.is_geographic else 30.0
    one.assign(geometry=one.geometry.translate(step, 0.0)).to_file(tmp_path / "moved.gpkg")
    moved = cfg.model_copy(update={"inventory": cfg.inventory.model_copy(update={"path": str(tmp_path / "moved.gpkg")})})
    with pytest.raises(IncompatibleStoreError, match="rasterised from another inventory"):
        inference.infer_to_store(moved, "sentinel-2", weights, url)
    assert RegionStore.open(url).years("sentinel-2") == [2021]
    again = inference.infer_to_store(cfg, "sentinel-2", weights, url, chunk_size=256)
    assert again["years"] == {2021: 0}


def test_a_selected_tile_reads_and_infers_only_its_pieces_near_glaciers(small_study_area, tmp_path):
    """Tiles read in small pieces (`tiling.read_px`): a selected tile's pieces beyond the tiling buffer
    of every outline are never read (no read task in the graph), the others only over their boxes,
    stored as not read (observed and
    indices 255, doy 0, probability 0), and every pixel within the buffer is read; pixels whose whole
    halo lies inside the buffer get the whole-image probability."""
    import geopandas as gpd
    import shapely
    from dask.core import flatten

    from catalog.halo_layout import HaloLayout
    from catalog.tiling import glacier_pixel_mask, glacier_tiles, outlines_on_grid, pixels_near_by_piece
    from pipeline.config import load_config
    from pipeline.inference.yearly_cube import yearly_cube
    from pipeline.store import RegionStore

    area = small_study_area
    one = gpd.read_parquet(area.root / "inventory" / "glaciers.parquet").iloc[[0]]
    one.to_file(tmp_path / "one.gpkg")
    buffer_m = 1500.0
    cfg = load_config(None, synthetic={"path": str(area.root)}, region={"bbox": list(area.spec.bbox())},
                      years={"start": 2021, "end": 2021}, inventory=str(tmp_path / "one.gpkg"),
                      tiling={"buffer_m": buffer_m, "tile_px": 256, "read_px": 256})
    grid = cfg.grid("sentinel-2")
    whole_cube = yearly_cube(cfg, "sentinel-2", years=[2021], chunks=256).compute()
    weights = _tiny_model("unet", tmp_path / "unet.safetensors", calibrate_on=whole_cube)
    halo = inference.HALO_BY_ARCHITECTURE["unet"]

    near = (one, buffer_m, "one.gpkg")
    everything = yearly_cube(cfg, "sentinel-2", years=[2021], chunks=256, halo=halo)
    some = yearly_cube(cfg, "sentinel-2", years=[2021], chunks=256, halo=halo, near=near)
    assert "read" not in everything and some["read"].dtype == bool

    def reads(cube):  # the read tasks the haloed reflectance (what the forward passes take) waits for
        data = cube["reflectance_haloed"].data
        graph = data.__dask_graph__().cull(set(flatten(data.__dask_keys__())))
        return sum(str(k[0] if isinstance(k, tuple) else k).startswith("read_chunk") for k in graph)

    assert 0 < reads(some) < reads(everything)

    url = str(tmp_path / "store.zarr")
    summary = inference.infer_to_store(cfg, "sentinel-2", weights, url)
    assert summary["tiles"]["buffer_m"] == buffer_m
    tiles = glacier_tiles(grid, one, buffer_m, 256)
    read_px = summary["tiles"]["fraction_read"] * grid.shape[0] * grid.shape[1]
    assert 0.2 * tiles.window_pixels(halo) < read_px < 0.8 * tiles.window_pixels(halo)  # the selected tiles whole, with halos
    # of the near pieces, only their boxes (the outline's box grown by the buffer and the halo) are read
    layout = HaloLayout.of(grid.shape, 256, halo, read_px=256)
    rows, cols = layout.read_windows(0), layout.read_windows(1)
    pieces = pixels_near_by_piece(grid, one, buffer_m, rows, cols, context_px=halo)
    chosen = pieces.near & tiles.mask[np.ix_(layout.piece_tiles(0), layout.piece_tiles(1))]
    whole_pieces = np.outer([r.stop - r.start for r in rows], [c.stop - c.start for c in cols])[chosen].sum()
    boxes = pieces.boxes[chosen]
    assert read_px == pytest.approx(((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).sum())
    assert read_px < 0.95 * whole_pieces
    ds = RegionStore.open(url).open_dataset("sentinel-2").sel(year=2021)
    observed, indices = ds.observed.values, ds.indices.values
    probability = ds.probability.values.astype(np.float32) / 255
    within = glacier_pixel_mask(grid, one, buffer_m)
    unread = observed == 255
    assert not (unread & within).any()  # all of the buffer is read
    inferred = np.zeros(grid.shape, bool)
    for r, c in glacier_tiles(grid, one, buffer_m, 256).tiles:
        inferred[r * 256:(r + 1) * 256, c * 256:(c + 1) * 256] = True
    assert (unread & inferred).sum() > 0.1 * inferred.sum()  # a good part of the selected tiles was left unread
    np.testing.assert_array_equal(unread, ~(within & inferred))  # exactly the pixels beyond the buffer, to the pixel
    assert (probability[unread] == 0).all() and (indices[unread] == 255).all() and (ds.doy.values[unread] == 0).all()
    assert (observed[~unread] < 255).all() and (indices[~unread] < 4).all()

    # exact where a pixel's whole halo lies inside the buffer: the outline grown by buffer - halo x sqrt(2)
    reach = buffer_m - halo * grid.resolution * np.sqrt(2)
    core = glacier_pixel_mask(grid, one, reach)
    outline = shapely.union_all(outlines_on_grid(grid, one))
    assert core.sum() > outline.area / grid.resolution**2  # more than the glacier itself
    whole = _whole_image(whole_cube, weights)[0]
    assert np.abs(probability - whole)[core].max() <= TOLERANCE + 0.5 / 255


@pytest.mark.parametrize("size", [416, 500])
def test_forward_windows_inside_a_tile_leave_no_seams(tmp_path, size):
    """A tile larger than the forward window runs as several windows with the halo as context:
    the same result as one pass over the tile (within 1/255), so memory is bounded by the window."""
    cube = _cube(size, size)
    weights = _tiny_model("unet", tmp_path / "unet.safetensors", calibrate_on=cube)
    halo = inference.HALO_BY_ARCHITECTURE["unet"]
    whole = inference.probability_cube(cube, weights, halo, device="cpu", chunk=size, window=4096)
    windowed = inference.probability_cube(cube, weights, halo, device="cpu", chunk=size, window=112)
    assert whole.data.numblocks == (1, 1, 1)
    assert windowed.data.numblocks[1] > 1 and windowed.data.numblocks[2] > 1  # one task per window
    assert np.abs(windowed.values - whole.values).max() <= TOLERANCE


def test_forward_passes_cover_only_the_pixels_to_infer_and_their_halo(tmp_path, monkeypatch):
    """A cube whose `read` marks a disc of 60 px radius to infer (`yearly_cube` marks the pixels within
    the tiling buffer): the passes run over the disc's box in each tile grown by the halo, not at all in
    tiles without a disc pixel, and give the probability of passes over everything on the disc (each of
    its pixels sees its whole halo), 0 off it."""
    cube = _cube(400, 400)
    yy, xx = np.mgrid[:400, :400]
    read = (yy - 200) ** 2 + (xx - 260) ** 2 <= 60**2
    weights = _tiny_model("unet", tmp_path / "unet.safetensors", calibrate_on=cube)
    halo = inference.HALO_BY_ARCHITECTURE["unet"]
    everything = inference.probability_cube(cube, weights, halo, device="cpu", chunk=128, window=128).values

    seen = []
    real = tile_forward._predict_whole

    def counting(reflectance, terrain, **kwargs):
        seen.append(reflectance.shape[-2:])
        return real(reflectance, terrain, **kwargs)

    monkeypatch.setattr(tile_forward, "_predict_whole", counting)
    skipping = inference.probability_cube(cube.assign(read=(("y", "x"), read)), weights, halo, device="cpu", chunk=128,
                                          window=128).values
    assert np.abs(skipping - everything * read).max() <= TOLERANCE
    assert (skipping[:, ~read] == 0).all() and (skipping[:, read] > 0.01).mean() > 0.5
    # the disc (rows 140-260, cols 200-320) lies in tiles 1-2 along each axis of the 4 x 4 tiles of 128 px
    assert len(seen) == 4
    windows = [(min(400, (r + 1) * 128 + halo) - max(0, r * 128 - halo)) * (min(400, (c + 1) * 128 + halo) - max(0, c * 128 - halo))
               for r in (1, 2) for c in (1, 2)]
    assert sum(h * w for h, w in seen) < 0.8 * sum(windows)


def test_a_tile_is_cut_into_the_windows_its_task_would_have_run():
    """`_pieces` gives each forward window its own task: the default area's Sentinel-2 grid
    (1110 x 1446 px, one 2048 px store tile, U-Net halo 96, CPU window 1024) runs two tasks a year
    where one task ran two windows in turn, on the same pixels."""
    assert inference._pieces(1446, 96, 1024) == (736, 710)
    assert list(np.cumsum((0, *inference._pieces(1446, 96, 1024)))) == tile_forward._window_edges(1446, 0, 1024)
    assert inference._pieces(1110, 96, 1024) == (1110,)  # fits one window with its halo
    assert inference._pieces(2048, 96, 1024) == (1024, 1024)  # 1024 + 2 x 96 = one window
    # store tiles stay the outer cut, a thin last one included (it has its neighbour's ground as context)
    assert HaloLayout.of((300, 300), 128, 96).tiles[0] == (128, 128, 44) and inference._pieces(44, 96, 1024) == (44,)
    assert inference._pieces(2048, 96, 2048) == (2048,)  # a GPU's window


def test_window_edges_split_the_interior_evenly_on_the_16_px_lattice():
    assert tile_forward._window_edges(2048 + 2 * 128, 128, 1024) == [0, 1152, 2304]
    assert tile_forward._window_edges(1000, 0, 4096) == [0, 1000]
    edges = tile_forward._window_edges(1446, 128, 1024)
    assert edges == [0, 736, 1446] and all(e % 16 == 0 for e in edges[:-1])


_UNITS = {"lock": threading.Lock(), "state": {"now": 0, "most": 0}, "finished": []}
"""What `_unit` tasks record, in this process (the in-process cluster's worker shares it)."""


def _unit(name, seconds, fail=False):
    with _UNITS["lock"]:
        _UNITS["state"]["now"] += 1
        _UNITS["state"]["most"] = max(_UNITS["state"]["most"], _UNITS["state"]["now"])
    time.sleep(seconds)
    with _UNITS["lock"]:
        _UNITS["state"]["now"] -= 1
        _UNITS["finished"].append(name)
    if fail:
        raise RuntimeError(f"unit {name} failed")
    return name


def test_batches_run_at_most_in_flight_at_once_and_the_next_starts_when_any_is_done(run_client):
    """On a cluster (two threads), `in_flight` bounds the batches running at once whatever the
    threads; the next batch starts as soon as any running one is done (short ones pass a long
    one), every batch runs once; a failure raises and cancels what is in flight."""
    import dask

    state, finished = _UNITS["state"], _UNITS["finished"]
    state["most"], finished[:] = 0, []

    def batches(seconds, fail_at=None):
        return [[dask.delayed(_unit, pure=False)(i, s, i == fail_at)] for i, s in enumerate(seconds)]

    shown = []
    inference.compute_batches(batches([0.05] * 6), run_client, None, in_flight=1, on_progress=lambda *done: shown.append(done))
    assert state["most"] == 1 and finished == list(range(6))
    assert shown == [(i, 6) for i in range(7)]  # the progress bar: each batch as it is done
    inference.compute_batches(batches([0.05] * 5), None, "sync", in_flight=2, on_progress=lambda *done: shown.append(done))
    assert shown[7:] == [(0, 5), (2, 5), (4, 5), (5, 5)]
    state["most"], finished[:] = 0, []
    inference.compute_batches(batches([1.0, 0.05, 0.05, 0.05, 0.05]), run_client, None, in_flight=2)
    assert state["most"] == 2 and finished[-1] == 0 and sorted(finished) == list(range(5))
    finished[:] = []
    with pytest.raises(RuntimeError, match="unit 1 failed"):
        inference.compute_batches(batches([0.3, 0.05] + [0.3] * 6, fail_at=1), run_client, None, in_flight=2)
    time.sleep(0.5)
    assert len(finished) < 8  # the batches after the failure were never started


_MADE = {"n": 0}


def _make_shared(value):
    with _UNITS["lock"]:
        _MADE["n"] += 1
    return value


def _use(shared, i):
    return shared + i


def test_a_shared_task_is_made_once_for_the_batches_that_use_it_then_let_go(run_client):
    """A tile's terrain, read by every one of its years: with `shared`, batches that run one after
    another (nothing of one is kept by the next) make it once; without, each batch makes it again.
    When the last batch naming it is done, the cluster lets it go."""
    import dask

    for hold, made in ((False, 3), (True, 1)):
        shared = dask.delayed(_make_shared, pure=True)(7 if hold else 8)
        _MADE["n"] = 0
        batches = [[dask.delayed(_use, pure=False)(shared, i)] for i in range(3)] + [[dask.delayed(_use, pure=False)(1, 3)]]
        inference.compute_batches(batches, run_client, None, in_flight=1, shared=[shared] * 3 + [None] if hold else None)
        assert _MADE["n"] == made
        time.sleep(0.3)
        assert not run_client.run_on_scheduler(lambda dask_scheduler, key=shared.key: key in dask_scheduler.tasks)
    with pytest.raises(ValueError, match="one .or None. per batch"):
        inference.compute_batches(batches, run_client, None, shared=[None])


_TERRAIN_MADE: list = []


def _counted_block_terrain(dem, *, windows, centres, crs, block_id):
    """catalog.terrain._block_terrain, each call recorded (a module function: the worker unpickles it by name)."""
    with _UNITS["lock"]:
        _TERRAIN_MADE.append(tuple(block_id))
    return _block_terrain(dem, windows=windows, centres=centres, crs=crs, block_id=block_id)


def test_a_run_makes_each_tile_s_terrain_once(small_study_area, tmp_path, monkeypatch, run_client):
    """On a cluster, a tile's terrain (its DEM warped with the halo, slope, aspect) is made once for
    its static layers and every year's unit, not once a year: units run tile by tile, the tile's
    static writes go with its first unit, and `compute_batches` keeps the terrain until its last."""
    import catalog.terrain as terrain_module
    from pipeline.config import load_config
    from pipeline.store import RegionStore

    made = _TERRAIN_MADE
    made.clear()
    monkeypatch.setattr(terrain_module, "_block_terrain", _counted_block_terrain)
    # one unit at a time: nothing of a unit outlives it unless it is kept (two in flight often overlap)
    monkeypatch.setattr(inference, "_threads", lambda client: 1)
    area = small_study_area
    cfg = load_config(None, synthetic={"path": str(area.root)}, region={"bbox": list(area.spec.bbox())},
                      years={"start": 2021, "end": 2022}, tiling={"tile_px": 512})
    weights = _tiny_model("unet", tmp_path / "unet.safetensors")
    url = str(tmp_path / "store.zarr")
    summary = inference.infer_to_store(cfg, "sentinel-2", weights, url, client=run_client)
    tiles = summary["tiles"]["total"]
    assert tiles > 1 and summary["years"] == {2021: tiles, 2022: tiles}
    assert sorted(made) == sorted(set(made)) and len(made) == tiles  # once a tile, for two years and the statics
    assert RegionStore.open(url).static_complete("sentinel-2", "slope")


def test_units_are_computed_tile_by_tile_each_tile_s_years_in_order():
    """Every unit task exactly once, tile by tile and each tile's years in order (what the sliding
    window of `compute_batches` takes them in, a tile's terrain kept meanwhile), whatever order they
    were made in."""
    x9 = [((r, c), y, f"{y}-{r}{c}") for r in range(3) for y in (2017, 2016) for c in range(3)]
    ordered = inference.units_in_order(x9)
    assert ordered == [((r, c), f"{y}-{r}{c}") for r in range(3) for c in range(3) for y in (2016, 2017)]
    assert inference.units_in_order([]) == []


def test_on_a_gpu_cluster_only_the_forward_passes_ask_for_the_gpu(small_study_area, small_weights, tmp_path):
    """With one GPU worker among CPU workers, the forward tasks (and the cuts that feed them) ask
    for ``{"GPU": 1}``; the composites, the index layers and the unit tasks that compress and write
    every layer run anywhere: pinned, they all queued on the one GPU worker's threads in the H200's
    x4 run (docs/scaling.md). gpus=1 is forced: the bookkeeping is tested, the forward runs on the
    CPU (`device="cpu"`)."""
    import collections

    from distributed.diagnostics.plugin import SchedulerPlugin
    from rich.console import Console

    from pipeline.config import load_config
    from pipeline.scale.cluster import start_cluster
    from pipeline.store import RegionStore

    class Restrictions(SchedulerPlugin):
        name = "restrictions"

        def __init__(self):
            self.asked, self.seen = collections.Counter(), collections.Counter()

        def update_graph(self, scheduler, *, keys, tasks=None, annotations=None, **kwargs):
            resources = (annotations or {}).get("resources", {})
            for key in tasks or ():
                name = str(key[0] if isinstance(key, tuple) else key)
                name = name.split("-")[0] if name.startswith(("write_unit_task", "write_block_task")) else name.rsplit("-", 1)[0]
                self.seen[name] += 1
                self.asked[name] += key in resources

    area = small_study_area
    cfg = load_config(None, synthetic={"path": str(area.root)}, region={"bbox": list(area.spec.bbox())},
                      years={"start": 2021, "end": 2021}, tiling={"tile_px": 256})
    url = str(tmp_path / "store.zarr")
    plugin = Restrictions()
    spec = {"kind": "local", "local": {"workers": 2, "threads_per_worker": 1, "gpus": 1, "dashboard_address": ":0"}}
    with open(tmp_path / "log", "w") as log, start_cluster(spec, console=Console(file=log)) as client:
        client.cluster.scheduler.add_plugin(plugin)
        summary = inference.infer_to_store(cfg, "sentinel-2", small_weights["sentinel-2"], url, client=client, device="cpu")
    assert summary["years"][2021] > 0 and RegionStore.open(url).pending_units("sentinel-2") == []
    pinned = {name for name, n in plugin.asked.items() if n}
    assert plugin.asked["predict_piece"] == plugin.seen["predict_piece"] > 0  # every forward on the GPU worker
    assert plugin.seen["write_unit_task"] > 0 and plugin.asked["write_unit_task"] == 0
    for free in ("read_chunk", "encode_probability", "encode_observed", "encode_indices"):
        assert plugin.seen[free] > 0 and free not in pinned


def test_the_forward_device_is_the_workers_not_the_clients():
    cluster = object()  # any client: only whether there is one matters
    assert inference.forward_device(None, cluster, {"GPU": 1}) == "cuda"  # a GPU-less login node, GPU workers
    assert inference.forward_device(None, cluster, None) == "cpu"  # a GPU laptop, CPU workers
    assert inference.forward_device("cpu", cluster, {"GPU": 1}) == "cpu"  # asked for
    assert inference.forward_device(None, None, None) is None  # no cluster: this process's own


def test_forward_layout_is_channels_last_except_deformable_networks_on_cuda():
    from pipeline.model.dunet import DeepDUNet
    from pipeline.model.predictor import forward_memory_format

    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # nothing is moved: the choice only
    unet, dunet, deep = UNet(9, 4), DUNet(9, 4), DeepDUNet(9, 4)
    assert forward_memory_format(unet, cpu) == forward_memory_format(dunet, cpu) == torch.channels_last
    assert forward_memory_format(unet, cuda) == torch.channels_last
    assert forward_memory_format(dunet, cuda) == forward_memory_format(deep, cuda) == torch.contiguous_format


def test_a_predictor_building_its_inputs_on_the_device_predicts_as_the_numpy_one(tmp_path):
    """GPU predictors build their inputs with torch (`device_inputs`, the default off the CPU); forced
    on here, the probabilities match the numpy-built ones to well under the store's 1/255."""
    cube = _cube(100, 90)
    weights = _tiny_model("unet", tmp_path / "unet.safetensors", calibrate_on=cube)
    model, card = load_model(weights)
    reflectance = cube["reflectance"].isel(year=0).values
    terrain = {name: cube[name].values for name in card.recipe.terrain_sources}
    on_host = TorchPredictor(model, card.recipe, device="cpu")
    on_device = TorchPredictor(model, card.recipe, device="cpu", device_inputs=True)
    assert not on_host.device_inputs and on_device.device_inputs
    a, b = on_host.predict_batch([reflectance], terrain), on_device.predict_batch([reflectance], terrain)
    assert a.shape == b.shape == (1, 100, 90) and (a > 0).any()
    assert np.abs(a - b).max() < 1e-4


@pytest.mark.filterwarnings("ignore:skipping an unreadable window")  # said by the read threads, recorded below
def test_a_year_whose_reads_the_storage_refused_is_made_again_by_the_next_run(small_study_area, tmp_path, monkeypatch):
    """A read the storage refuses under on_unreadable: skip (a link whose signature expired mid-run) leaves
    that scene out of its chunk. The year is written whole (the run's tables and masks use it) and noted, so
    the next run of the same command makes it again once the read succeeds; before, its units were finished
    and a rerun kept the year without the scene for good (a helper's run: a year left empty). Damage inside
    a file is not retried by every run (its message says to re-fetch the scene and reset the year)."""
    from catalog.reads import REFUSED_SAYS, ExplainingRioReader, SceneReadError
    from pipeline.config import load_config
    from pipeline.inference.yearly_cube import yearly_cube
    from pipeline.store import RegionStore

    area = small_study_area
    cfg = load_config(None, synthetic={"path": str(area.root)}, region={"bbox": list(area.spec.bbox())},
                      years={"start": 2021, "end": 2021})
    cube = yearly_cube(cfg, "sentinel-2", years=[2021], chunks=256).compute()
    weights = _tiny_model("unet", tmp_path / "unet.safetensors", calibrate_on=cube)
    victim = min(cube.attrs["scene_ids"]["2021"])
    read = ExplainingRioReader.read

    def failing(advice):
        def read_or_fail(self, window, **kwargs):
            if victim in self.url and self.url.endswith("nir.tif"):
                raise SceneReadError(f"cannot read COG {self.url}: HTTP response code: 403. {advice}")
            return read(self, window, **kwargs)
        return read_or_fail

    damaged = str(tmp_path / "damaged.zarr")
    monkeypatch.setattr(ExplainingRioReader, "read", failing("The scene check ... damage lies inside the file"))
    summary = inference.infer_to_store(cfg, "sentinel-2", weights, damaged, chunk_size=256)
    assert {s["item_id"] for s in summary["skipped_scenes"]} == {victim}
    assert RegionStore.open(damaged).unread_years("sentinel-2") == []  # damage: kept as made
    # ... and said by every later run, which reads nothing of that year: built from the run alone, an update's
    # provenance and scenes_skipped lost every earlier year's skipped scenes (a helper's update audit)
    monkeypatch.setattr(ExplainingRioReader, "read", read)
    later = inference.infer_to_store(cfg, "sentinel-2", weights, damaged, chunk_size=256)
    assert later["years"] == {2021: 0} and {s["item_id"] for s in later["skipped_scenes"]} == {victim}
    assert set(later["scale_offset"]) == set(summary["scale_offset"]) == set(cube.attrs["scene_ids"]["2021"])

    url = str(tmp_path / "store.zarr")
    monkeypatch.setattr(ExplainingRioReader, "read", failing(f"{REFUSED_SAYS}: the link's signature expired"))
    summary = inference.infer_to_store(cfg, "sentinel-2", weights, url, chunk_size=256)
    assert {s["item_id"] for s in summary["skipped_scenes"]} == {victim}, summary["skipped_scenes"]
    store = RegionStore.open(url)
    assert store.pending_units("sentinel-2") == []  # written whole, for this run's tables and masks ...
    assert store.unread_years("sentinel-2") == [2021]  # ... and noted, to be made again
    assert store.year_records("sentinel-2")[2021]["unread_scene_ids"] == [victim]

    monkeypatch.setattr(ExplainingRioReader, "read", read)  # the link reads again
    again = inference.infer_to_store(cfg, "sentinel-2", weights, url, chunk_size=256)
    assert again["years"] == {2021: len(store.units("sentinel-2", 2021))} and again["skipped_scenes"] == []
    assert store.pending_units("sentinel-2") == [] and store.unread_years("sentinel-2") == []
    assert store.year_records("sentinel-2")[2021]["scene_ids"] == sorted(cube.attrs["scene_ids"]["2021"])
    assert inference.infer_to_store(cfg, "sentinel-2", weights, url, chunk_size=256)["years"] == {2021: 0}  # then kept


@pytest.mark.slow
def test_a_scene_of_the_other_hemisphere_goes_through_the_network_mirrored_and_comes_back_seamless(tmp_path):
    """The shipped networks saw northern scenes only (the sun from the south); a southern region's tiles go
    through them mirrored north-south (`TrainingDomain.mirrors`). A scene mirrored north-south and fed
    mirrored gets the scene's own map back: exactly in one pass, within 1/255 cut into tiles and windows
    (the mirror keeps every window on one phase of the 16-px lattice)."""
    cube = _cube(400, 560)  # 25 x 35 lattice cells
    weights = _tiny_model("unet", tmp_path / "unet.safetensors", calibrate_on=cube)
    model, card = load_model(weights)
    plain, mirrored = (TorchPredictor(model, card.recipe, "cpu", mirror=m) for m in (False, True))
    terrain = {t: cube[t].values for t in card.recipe.terrain}
    flipped = {t: np.ascontiguousarray(v[::-1]) for t, v in terrain.items()}
    scene = cube.reflectance.values[0]
    south = np.ascontiguousarray(scene[:, ::-1])
    north_map = plain.predict(scene, terrain)
    np.testing.assert_array_equal(mirrored.predict(south, flipped)[::-1], north_map)
    assert np.abs(plain.predict(south, flipped)[::-1] - north_map).max() > 0.1  # the network does tell north from south

    southern = cube.isel(y=slice(None, None, -1)).assign_coords(y=cube.y.values)
    halo = inference.HALO_BY_ARCHITECTURE["unet"]
    for chunk, window in ((128, 4096), (400, 112)):
        mosaic = inference.probability_cube(southern.chunk({"y": chunk, "x": chunk}), weights, halo, device="cpu", window=window,
                                            mirror=True)
        assert mosaic.attrs["mirrored_north_south"] == 1
        assert np.abs(mosaic.compute(scheduler="threads").values[0, ::-1] - north_map).max() <= TOLERANCE, (chunk, window)
    # a side that is no multiple of 16: tiles and windows are padded, then mirrored, all on one lattice phase
    odd = _cube(392, 552)
    whole = mirrored.predict(odd.reflectance.values[0], {t: odd[t].values for t in card.recipe.terrain})
    for chunk, window in ((128, 4096), (392, 112)):
        mosaic = inference.probability_cube(odd.chunk({"y": chunk, "x": chunk}), weights, halo, device="cpu", window=window,
                                            mirror=True)
        assert np.abs(mosaic.compute(scheduler="threads").values[0] - whole).max() <= TOLERANCE, (chunk, window)
