"""`glacierwatch predict`: glacier probability for one scene a user already has on disk.

A run builds yearly composites from a STAC catalog; someone holding six band GeoTIFFs (a scene
downloaded by hand, or from another processor) wants a map of exactly those pixels. This reads
them as they are and writes one Cloud-Optimized GeoTIFF.

Conventions, chosen once and written into the file's metadata:
- Grid: the FIRST band's (CRS, transform, shape), i.e. the finest one (Sentinel-2's 10 m blue).
  Other bands (20 m SWIR, even another CRS) and the DEM (any CRS and resolution) are warped
  onto it bilinearly: reflectance and elevation are continuous fields. Slope is computed on the
  grid from the warped DEM, by Horn's method through xarray-spatial (`catalog.terrain`, as it does
  for a run), from a DEM read one pixel wider so block edges get values.
- Reflectance = DN x `scale` + `offset` (defaults 1e-4 and 0; Sentinel-2 L2A of processing
  baseline 04.00+ needs --offset -0.1, Landsat C2 L2 --scale 2.75e-5 --offset -0.2). Scale or
  offset metadata inside the files is not read: the user says what the numbers are.
- No data: where any band is no data - the file's declared nodata value or mask, or NaN - and,
  for a network whose recipe uses terrain, where the DEM is no data or does not reach. A band of
  integer DNs that declares neither (the JP2 files of a Sentinel-2 SAFE) takes DN 0 as no data,
  the value both products reserve (Sentinel-2 L2A NO_DATA, Landsat C2 L2 fill), and says so in a
  warning; floats without one take NaN. Near a no-data edge of a coarser band
  GDAL's bilinear kernel uses the valid neighbours, so the edge may keep a half-pixel of values.
- Clouds: with the scene's quality layer (`quality`: Sentinel-2 SCL, Landsat QA_PIXEL; read by
  nearest neighbour, any grid), what it calls cloud, cloud shadow, cirrus, saturated or fill is no
  data, as in a run's composites; snow and ice stay. Without it every pixel is mapped.
- Output: uint8, value = round(p x 255) clipped to 254 (so 254 means p >= 0.996), 255 = no
  data (the GeoTIFF's nodata). The band's scale is 1/255, so GDAL-aware readers unscale to p.
  (The region store's uint8 uses 0..255 for p; here 255 is reserved for no data.)

Memory stays bounded on a whole 10980 x 10980 scene: the grid is cut into blocks of `block`
px on the 16-px lattice, each read with `halo` px of context (the inputs are warped per block,
never whole), and pushed through `pipeline.inference.tile_forward.predict_block`, which runs the network
on windows of at most `window` px exactly as a run's Dask tasks do, so the seams are invisible
for the same reasons (see pipeline/inference/region.py). The blocks go to a temporary tiled GeoTIFF
beside `out`, which GDAL's COG driver then copies into place.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from catalog.masks import QA_FILL, SCL_NO_DATA, clear_mask
from catalog.providers import REFLECTANCE_BANDS
from catalog.reflectance_check import offset_stats
from pipeline.inference.scene_inputs import (
    DEM_VOID,
    PRODUCT_FILL_DN,
    Grid,
    MissingInputError,
    PredictError,
    band_nodata,
    dem_nodata,
    open_band,
    overlaps,
    read_classes,
    read_onto,
    read_terrain,
)
from pipeline.model.inputs import PHYSICAL_BANDS

CLASSIFIERS = ("network", "dunet", "unet", "band-ratio", "ndsi")
NODATA = 255
MAX_VALID = 254
BLOCK_PX = 2048
"""Core of one read block (a multiple of 16, like the store's chunks): six float32 bands plus
terrain at (2048 + 2 x 336)^2 px is ~240 MB; the network's own memory is bounded by `window`."""
TERRAIN_CHANNELS = ("elevation", "slope")
"""Terrain channels this command can build from --dem; weights asking for others are refused."""
MIN_JUDGED = 1000
"""Valid pixels a block needs before its reflectance is judged for a wrong --scale/--offset."""
MAX_DEM_GAP = 0.01
"""Share of the bands' valid pixels the DEM may leave without elevation (written as no data) before
`predict` says so: a DEM of part of the scene is a user's slip, not a gap in the data."""


@dataclass(frozen=True)
class PredictResult:
    """What `predict_scene` wrote: the file, the grid, how much was valid and looked like ice."""

    out: Path
    sensor: str
    classifier: str
    weights: Path | None
    crs: str
    shape: tuple[int, int]
    resolution: tuple[float, float]
    n_valid: int
    n_glacier: int
    """Valid pixels with p >= 0.5."""
    warnings: tuple[str, ...] = ()
    n_index_ice: int = 0
    """Valid pixels both spectral indices call snow or ice (`index_ice`); counted for networks only."""
    n_index_ice_mapped: int = 0
    """Those the network maps (p >= 0.5)."""
    mirrored_north_south: bool = False
    """The scene lies in the other hemisphere than the network's training: it went through mirrored (`TrainingDomain.mirrors`)."""

    @property
    def index_recall(self) -> float:
        """Share of the indices' snow and ice the network maps (NaN where they map none)."""
        return self.n_index_ice_mapped / self.n_index_ice if self.n_index_ice else float("nan")

    @property
    def glacier_fraction(self) -> float:
        return self.n_glacier / self.n_valid if self.n_valid else 0.0


def encode(probability: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """p in [0, 1] -> uint8 round(p x 255) clipped to 254; 255 where not `valid`."""
    p = np.nan_to_num(np.asarray(probability, dtype=np.float32), nan=0.0)
    coded = np.minimum(np.rint(np.clip(p, 0.0, 1.0) * 255.0), MAX_VALID).astype(np.uint8)
    return np.where(valid, coded, np.uint8(NODATA))


def _check_scale(reflectance: np.ndarray, stats, scale: float, offset: float) -> None:
    """Refuse reflectance that is plainly not 0-1 (a wrong --scale), judged on the first block with
    MIN_JUDGED valid pixels: the median of the brightest band above 2 (DNs read with too large a
    scale), its 99th percentile below 0.002 (files already in reflectance, scaled again), or the 1st
    percentile of each pixel's darkest band above 0.4 (Landsat C2 L2 DNs read with Sentinel-2's scale
    start at 0.73). `stats`: the block's `catalog.reflectance_check.offset_stats`."""
    valid = np.isfinite(reflectance).all(axis=0)
    brightest = reflectance[:, valid].max(axis=0)
    median, p99 = float(np.median(brightest)), float(np.percentile(brightest, 99))
    given = f"--scale {scale:g} --offset {offset:g}"
    if median > 2.0:
        raise PredictError(
            f"with {given} the bands' reflectance has median {median:.3g} (expected 0-1): the files hold DNs "
            "of another scale; pass theirs (Sentinel-2 L2A: --scale 1e-4, plus --offset -0.1 from baseline 04.00; "
            "Landsat C2 L2: --scale 2.75e-5 --offset -0.2)"
        )
    if p99 < 0.002:
        raise PredictError(
            f"with {given} the bands' reflectance is at most {p99:.2g} (99th percentile; expected 0-1): "
            "the files look like reflectance already: pass --scale 1 --offset 0"
        )
    if stats.p1_darkest > 0.4:
        raise PredictError(
            f"with {given} even the darkest band of 99% of pixels is above {stats.p1_darkest:.2f} (snow's SWIR, water, "
            "vegetation's red are near 0): the scale or offset is wrong (Landsat C2 L2: --scale 2.75e-5 --offset -0.2; "
            "Sentinel-2 L2A baseline 04.00+: --scale 1e-4 --offset -0.1)"
        )


def _check_offset(stats, scale: float, offset: float, first: bool) -> tuple[str | None, bool]:
    """(warning, judged) by `catalog.reflectance_check`'s rules for an offset applied twice or missing,
    from a block's `offset_stats`.

    An offset applied twice is judged on the first block with MIN_JUDGED valid pixels (`first`), as
    before: a later block of water or deep shadow alone would look so. A missing offset needs the snow
    and ice whose SWIR tells (`OffsetStats.missing`), so later blocks are tried until one holds them: a
    scene whose first block is snow-free rock said nothing of a missing offset before (its ice lay
    beyond column 2,048)."""
    from catalog.reflectance_check import MIN_VALID, TWICE_BELOW

    given = f"--scale {scale:g} --offset {offset:g}"
    if first and stats.applied_twice:
        return (f"{stats.share_far_below:.0%} of pixels have a band below {TWICE_BELOW} with {given}: "
                "the offset looks applied twice (files already offset-corrected?): check --offset"), True
    if stats.missing:
        return (f"no dark pixels with {given} (1st percentile of each pixel's darkest band {stats.p1_darkest:.2f}, "
                f"{stats.p1_darkest_snow:.2f} over snow and ice): an offset looks missing (Sentinel-2 baseline 04.00+: "
                "--offset -0.1; Landsat C2 L2: -0.2)"), True
    return None, stats.judged and stats.n_snow >= MIN_VALID


QUALITY_LAYER = {"sentinel-2": "SCL (scene classification, classes 0-11)", "landsat": "QA_PIXEL (bit flags)"}
QUALITY_FILL = {"sentinel-2": SCL_NO_DATA, "landsat": 1 << QA_FILL}
"""What a quality layer says where it has no data: SCL class 0, QA_PIXEL's fill bit."""
SCL_MAX_CLASS = 11


WATER_NIR = 0.1
"""NIR reflectance below which a pixel is water, not ice: both indices call turbid water ice (NDSI
~0.8, red/SWIR16 ~8), glacier ice and snow reflect 0.1-0.8 in the NIR."""
MIN_INDEX_ICE_PX = 1000
"""The indices' snow and ice a scene must hold before the network is judged against them."""
MIN_INDEX_RECALL = 0.5
"""A network mapping less than this share of the indices' snow and ice is warned about."""


def index_ice(reflectance: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """Pixels both NDSI > 0.4 and red/SWIR16 > 2 call snow or ice (`pipeline.store.encode_indices`, the
    run's `indices`), water (NIR < `WATER_NIR`) left out: the ice no one needs a network to see."""
    from pipeline.model.inputs import band_by_role
    from pipeline.store.encoding import NDSI_BIT, RATIO_BIT, encode_indices

    bands = tuple(bands)
    with np.errstate(invalid="ignore"):
        nir = band_by_role(reflectance, bands, "nir")
        return (encode_indices(reflectance, bands) == (NDSI_BIT | RATIO_BIT)) & (nir >= WATER_NIR)


def _check_quality(classes: np.ndarray, sensor: str, path) -> None:
    """Refuse the other sensor's layer: SCL has classes 0-11, QA_PIXEL of a clear pixel is 21824 and up."""
    top = int(classes.max()) if classes.size else 0
    if sensor == "sentinel-2" and top > SCL_MAX_CLASS:
        raise PredictError(f"--quality {path} holds values up to {top}, not Sentinel-2 SCL classes (0-11): give the "
                           "scene's SCL file (a Landsat QA_PIXEL goes with --sensor landsat)")
    if sensor == "landsat" and 1 < top <= SCL_MAX_CLASS:
        raise PredictError(f"--quality {path} holds values up to {top}, which look like Sentinel-2 SCL classes, not "
                           "Landsat QA_PIXEL bit flags: give the scene's QA_PIXEL file")


def predict_scene(
    bands: Sequence[str | Path],
    sensor: str,
    out: str | Path,
    scale: float = 1e-4,
    offset: float = 0.0,
    dem: str | Path | None = None,
    classifier: str = "network",
    weights: str | Path | None = None,
    *,
    device: str | None = None,
    half: bool | None = None,
    halo: int | None = None,
    block: int | None = None,
    window: int | None = None,
    warn: Callable[[str], None] | None = None,
    quality: str | Path | None = None,
) -> PredictResult:
    """Write `out`, a COG of glacier probability on the first band's grid (see the module notes).

    `bands`: six single-band rasters in the sensor's order (`catalog.providers.REFLECTANCE_BANDS`:
    blue, green, red, nir, swir16, swir22). `classifier`: "network" (default: `weights`, else the
    shipped `pipeline/weights/{sensor}.safetensors`, whatever its architecture), "dunet" or "unet"
    (the same, refused when the weights hold another family: "dunet" covers every deformable
    placement), "band-ratio" (red/SWIR16 > 2) or "ndsi" (NDSI > 0.4). `dem` is needed when the weights' recipe uses
    terrain. `quality`: the scene's SCL (Sentinel-2) or QA_PIXEL (Landsat) file; what it calls cloud,
    cloud shadow, cirrus, saturated or fill is written as no data (`catalog.masks.clear_mask`, as in a
    run; snow and ice are kept). `halo` (default: the card's, as in a run), `block` (default BLOCK_PX) and `window`
    (default `FORWARD_WINDOW_PX`) bound memory; `device`/`half` as in a run. `warn` receives each
    one-line warning (default: `warnings.warn`). Bad inputs raise `PredictError` (a ValueError;
    `MissingInputError` is also a FileNotFoundError) naming the input, before `out` is touched.
    """
    import torch

    from pipeline.config import SHIPPED_WEIGHTS
    from pipeline.inference.region import (
        DEFAULT_HALO,
        FORWARD_WINDOW_PX,
        HALO_BY_ARCHITECTURE,
        cached_predictor,
        read_card,
        round_up,
    )
    from pipeline.inference.tile_forward import predict_block
    from pipeline.model.baselines import BandRatioPredictor, NDSIPredictor
    from pipeline.model.predictor import default_device

    said: list[str] = []

    def _warn(message: str) -> None:
        said.append(message)
        (warn or (lambda m: warnings.warn(m, stacklevel=3)))(message)

    if sensor not in REFLECTANCE_BANDS:
        raise PredictError(f"--sensor {sensor!r} is not known: use {' or '.join(REFLECTANCE_BANDS)}")
    if classifier not in CLASSIFIERS:
        raise PredictError(f"--classifier {classifier!r} is not known: use one of {', '.join(CLASSIFIERS)}")
    names = REFLECTANCE_BANDS[sensor]
    paths = [Path(b) for b in bands]
    if len(paths) != len(names):
        order = ",".join(f"{n} ({r})" for n, r in zip(names, PHYSICAL_BANDS))
        raise PredictError(f"--bands needs {len(names)} files for {sensor}, in the order {order}; got {len(paths)}"
                           + (" (comma-separated, without spaces)" if len(paths) == 1 else ""))
    if not np.isfinite(scale) or scale == 0 or not np.isfinite(offset):
        raise PredictError(f"--scale {scale} --offset {offset}: reflectance = DN x scale + offset needs a finite, non-zero scale")
    for path, name, role in zip(paths, names, PHYSICAL_BANDS):
        if not path.is_file():
            raise MissingInputError(f"band {name} ({role}) {path} does not exist")
    twice = sorted({str(p) for p in paths if sum(q.resolve() == p.resolve() for q in paths) > 1})
    if twice:
        raise PredictError(f"--bands names {', '.join(twice)} more than once: give the six bands' own files")
    if dem is not None and not Path(dem).is_file():
        raise MissingInputError(f"--dem {dem} does not exist")
    if quality is not None and not Path(quality).is_file():
        raise MissingInputError(f"--quality {quality} does not exist")
    out = Path(out)
    if out.resolve() in {p.resolve() for p in paths} | {Path(f).resolve() for f in (dem, quality) if f}:
        raise PredictError(f"--out {out} is one of the inputs: write the probability to a new file")
    if out.is_dir():
        raise PredictError(f"--out {out} is a folder: give a file name such as {out / 'probability.tif'}")

    # The network, its recipe and its terrain, checked before any pixel is read.
    card = None
    weights_path: Path | None = None
    if classifier in ("band-ratio", "ndsi"):
        if weights is not None:
            raise PredictError(f"--weights is for --classifier network, dunet or unet; {classifier} is a threshold and has none")
        predictor = (BandRatioPredictor if classifier == "band-ratio" else NDSIPredictor)(bands=names)
        terrain_names: tuple[str, ...] = ()
        halo = 0
        if dem is not None:
            _warn(f"--dem {dem} is not used by --classifier {classifier}")
            dem = None
    else:
        weights_path = Path(weights) if weights is not None else SHIPPED_WEIGHTS / f"{sensor}.safetensors"
        if not weights_path.is_file():
            raise MissingInputError(f"--weights {weights_path} does not exist")
        weights_path = weights_path.resolve()
        card = read_card(weights_path, sensor)
        family = card.architecture.split("-")[0]  # dunet-deep, dunet-shallow: D-UNets
        if classifier != "network" and family != classifier:
            which = f"--weights {weights_path}" if weights is not None else f"the shipped {sensor} weights ({weights_path.name})"
            raise PredictError(f"{which} hold a {card.architecture}, not a {classifier}: pass --classifier network "
                               f"(or {family}), or --weights of a {classifier}")
        classifier = card.architecture
        terrain_names = tuple(card.recipe.terrain_sources)
        unknown = [t for t in terrain_names if t not in TERRAIN_CHANNELS]
        if unknown:
            raise PredictError(f"--weights {weights_path} need terrain channels {unknown}; predict builds only "
                             f"{list(TERRAIN_CHANNELS)} from --dem: use weights without them, or band-ratio/ndsi")
        if terrain_names and dem is None:
            which = f"--weights {weights_path.name}" if weights is not None else f"the shipped {sensor} weights"
            raise PredictError(f"{which} need terrain ({', '.join(terrain_names)}): pass --dem DEM.tif "
                             "(any CRS and resolution), or use --classifier band-ratio or ndsi")
        if card.domain is None:
            _warn(f"{weights_path.name} has no training domain in its card: it is unknown what it was trained on")
        elif card.domain.kind == "synthetic":
            _warn(f"{weights_path.name} was trained on {card.domain.describe()} only: on real scenes it may map little "
                  "or no ice; compare with --classifier ndsi or band-ratio")
        device = str(torch.device(device) if device is not None else default_device())
        cuda = torch.device(device).type == "cuda"
        half = cuda if half is None else bool(half)
        if halo is None:
            halo = card.halo_px if card.halo_px is not None else HALO_BY_ARCHITECTURE.get(card.architecture, DEFAULT_HALO)
        window = round_up(window if window is not None else FORWARD_WINDOW_PX[cuda])
        predictor = cached_predictor(str(weights_path), card.weights_sha256, device, half)  # loads (and hashes) once
    if halo < 0:
        raise PredictError(f"halo must be >= 0 pixels, got {halo}")
    halo = round_up(halo)
    block = max(16, round_up(block if block is not None else BLOCK_PX))

    with contextlib.ExitStack() as stack:
        sources = []
        for i, (path, name) in enumerate(zip(paths, names)):
            src = stack.enter_context(open_band(path, f"band {name} ({PHYSICAL_BANDS[i]})"))
            sources.append(src)
        fills = [band_nodata(src) for src in sources]
        assumed = [name for name, src, fill in zip(names, sources, fills, strict=True) if src.nodata is None and fill == PRODUCT_FILL_DN]
        if assumed:
            _warn(f"bands {', '.join(assumed)} declare no nodata: DN {PRODUCT_FILL_DN}, the no-data value Sentinel-2 L2A and "
                  f"Landsat C2 L2 reserve, is taken as no data (if it is a value there, declare another: gdal_edit.py -a_nodata)")
        first = sources[0]
        grid = Grid(first.crs, first.transform, first.height, first.width)
        if not first.transform.is_rectilinear:
            raise PredictError(f"band {names[0]} {paths[0]} has a rotated geotransform: warp it north-up first (gdalwarp)")
        for path, name, src in zip(paths[1:], names[1:], sources[1:]):
            if not overlaps(src, grid):
                raise PredictError(f"band {name} {path} does not overlap the first band {paths[0]}: give bands of one scene")
        # a scene of the other hemisphere than the network's training goes through it mirrored north-south
        mirror = card is not None and card.domain is not None and card.domain.mirrors(_latitude(grid))
        trained_m = card.domain.resolution_m if card is not None and card.domain is not None else None
        pixel_m = abs(grid.transform.a) if not grid.crs.is_geographic else None
        if trained_m and pixel_m and not 0.67 < pixel_m / trained_m < 1.5:
            _warn(f"{weights_path.name} was trained at {trained_m:g} m; the first band {paths[0].name} is {pixel_m:g} m")
        quality_src = None
        if quality is not None:
            quality_src = stack.enter_context(open_band(Path(quality), "--quality"))
            if not np.issubdtype(np.dtype(quality_src.dtypes[0]), np.integer):
                raise PredictError(f"--quality {quality} holds {quality_src.dtypes[0]} values, not classes: give the "
                                   f"scene's {QUALITY_LAYER[sensor]} file")
            if not overlaps(quality_src, grid):
                raise PredictError(f"--quality {quality} does not overlap the first band {paths[0]}: give the scene's own")
        dem_src = None
        if terrain_names:
            dem_src = stack.enter_context(open_band(Path(dem), "--dem"))
            if not overlaps(dem_src, grid):
                raise PredictError(f"--dem {dem} does not cover the bands' footprint: give a DEM of the scene's area")
            if dem_src.nodata is None and dem_nodata(dem_src) == DEM_VOID:
                overview = dem_src.read(1, out_shape=(min(dem_src.height, 1024), min(dem_src.width, 1024)))
                if (overview == DEM_VOID).any():
                    _warn(f"--dem {dem} declares no nodata: {DEM_VOID}, SRTM's void value, is taken as no data "
                          "(declare it: gdal_edit.py -a_nodata)")

        created = [folder for folder in out.parents if not folder.exists()]  # removed again if the run fails
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial.tif")
        cog = out.with_name(f".{out.name}.cog.tif")
        profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=1, dtype="uint8", crs=grid.crs,
                       transform=grid.transform, nodata=NODATA, tiled=True, blockxsize=256, blockysize=256)
        n_valid = n_glacier = n_index = n_index_mapped = n_seen = 0
        scale_judged = offset_judged = False
        try:
            with rasterio.open(partial, "w", **profile) as dst:
                for row in range(0, grid.height, block):
                    for col in range(0, grid.width, block):
                        h, w = min(block, grid.height - row), min(block, grid.width - col)
                        r0, c0 = max(0, row - halo), max(0, col - halo)
                        r1, c1 = min(grid.height, row + h + halo), min(grid.width, col + w + halo)
                        reflectance = np.stack([read_onto(s, grid, r0, c0, r1 - r0, c1 - c0, fill) for s, fill in zip(sources, fills, strict=True)])
                        reflectance = reflectance * np.float32(scale) + np.float32(offset)
                        first = not scale_judged and np.isfinite(reflectance).all(axis=0).sum() >= MIN_JUDGED
                        if first or (scale_judged and not offset_judged):  # until a block holds the snow and ice that can tell
                            stats = offset_stats(reflectance)
                            if first:
                                _check_scale(reflectance, stats, scale, offset)
                                scale_judged = True
                            message, offset_judged = _check_offset(stats, scale, offset, first)
                            if message:
                                _warn(message)
                        valid = np.isfinite(reflectance).all(axis=0)
                        if quality_src is not None:
                            classes = read_classes(quality_src, grid, r0, c0, r1 - r0, c1 - c0, QUALITY_FILL[sensor])
                            _check_quality(classes, sensor, quality)
                            valid &= clear_mask(classes, sensor)
                        n_seen += int(valid[row - r0 : row - r0 + h, col - c0 : col - c0 + w].sum())
                        if card is None:
                            probability = predictor.predict(reflectance)
                        else:
                            terrain = read_terrain(dem_src, grid, r0, c0, r1 - r0, c1 - c0, terrain_names) if terrain_names else {}
                            for name in terrain_names:
                                valid &= np.isfinite(terrain[name])
                            order = [names.index(b) for b in card.recipe.bands]
                            stacked = np.concatenate([reflectance[order], *(terrain[t][None] for t in terrain_names)])
                            probability = predict_block(
                                stacked[None], path=str(weights_path), weights_sha256=card.weights_sha256, device=device,
                                half=half, n_bands=len(order), halo=halo, window=window, mirror=mirror,
                            )[0]
                        core = (slice(row - r0, row - r0 + h), slice(col - c0, col - c0 + w))
                        p, ok = probability[core], valid[core]
                        n_valid += int(ok.sum())
                        n_glacier += int((ok & (p >= 0.5)).sum())
                        if card is not None:
                            indexed = ok & index_ice(reflectance[(slice(None), *core)], names)
                            n_index += int(indexed.sum())
                            n_index_mapped += int((indexed & (p >= 0.5)).sum())
                        dst.write(encode(p, ok), 1, window=Window(col, row, w, h))
                if dem_src is not None and n_seen:
                    if not n_valid:
                        raise PredictError(f"--dem {dem} has no elevation under any of the bands' {n_seen} valid pixels "
                                           "(no data, or heights no land has, there): give a DEM that covers the scene")
                    if n_valid < (1 - MAX_DEM_GAP) * n_seen:
                        _warn(f"--dem {dem} has no elevation under {1 - n_valid / n_seen:.0%} of the bands' valid pixels: "
                              "written as no data (give a DEM that covers the scene)")
                dst.scales = (1 / 255,)
                dst.set_band_description(1, "glacier probability x 255 (255 = no data)")
                dst.update_tags(
                    glacier_probability="p = value / 255 for 0-254 (254: p >= 0.996); 255 = no data",
                    classifier=classifier, sensor=sensor, bands=",".join(str(p) for p in paths),
                    scale=f"{scale:g}", offset=f"{offset:g}", **({"quality": str(quality)} if quality is not None else {}),
                    **({"weights": str(weights_path), "weights_sha256": card.weights_sha256} if card else {}),
                    **({"mirrored_north_south": "yes: a scene of the other hemisphere than the network's training"} if mirror else {}),
                )
            rasterio.shutil.copy(partial, cog, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=512,
                                 OVERVIEW_RESAMPLING="AVERAGE")
            os.replace(cog, out)
        finally:
            for leftover in (partial, cog):
                leftover.unlink(missing_ok=True)
            if not out.exists():  # failed: the folders this run made go too (deepest first, only if empty)
                for folder in created:
                    with contextlib.suppress(OSError):
                        folder.rmdir()

    if n_index >= MIN_INDEX_ICE_PX and n_index_mapped < MIN_INDEX_RECALL * n_index:
        _warn(f"{weights_path.name} maps {n_index_mapped / n_index:.0%} of the {n_index} px that NDSI > 0.4 and red/SWIR16 > 2 "
              "both call snow or ice here (water left out): on this scene it may miss ice it does not know (dirty, dark, "
              "shadowed); compare with --classifier ndsi or band-ratio")
    return PredictResult(
        out=out, sensor=sensor, classifier=classifier, weights=weights_path, crs=str(grid.crs),
        shape=(grid.height, grid.width), resolution=(abs(grid.transform.a), abs(grid.transform.e)),
        n_valid=n_valid, n_glacier=n_glacier, warnings=tuple(said), n_index_ice=n_index, n_index_ice_mapped=n_index_mapped,
        mirrored_north_south=mirror,
    )


def _latitude(grid: Grid) -> float:
    """The latitude (deg) of the centre of `grid`."""
    from pyproj import Transformer

    x, y = grid.transform * (grid.width / 2, grid.height / 2)
    return float(Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)[1])
