"""Glacier probability for a region's yearly cube: the network mapped by Dask over spatial chunks.

Strategy. The cube's reflectance (year, band, y, x) and the terrain channels the model's recipe
asks for are laid out lazily in blocks that are the store's
tiles each with `halo` pixels of the ground around it (`catalog.halo_layout`; at the region's
outer edge there is nothing around and nothing is invented). A production cube is read and
composited that way (`yearly_cube(halo=...)`), so no tile waits for, or a worker holds, its
neighbours' composites; a cube without it has each tile's halo cut from its neighbours. Where
outlines choose the tiles, a selected tile's pieces beyond the tiling buffer are not read either
(`yearly_cube(near=...)`, `catalog.tiling.pixels_near_by_piece`), only the pixels within the buffer
are inferred (a forward pass covers them and their halo, or nothing), and the store says "not read"
elsewhere, as for a tile not selected. Each
task runs the network over one piece of a tile with `halo` pixels of context, through the recipe
exactly as `TorchPredictor` does (reflect-pad to a multiple of 16 at the bottom/right, sigmoid,
no-data -> 0), and keeps the piece.

Why the result equals one whole-image prediction. A U-Net with four 2x2 poolings is only
shift-equivariant for shifts that are multiples of 16, so every tile, halo included, must start
on the global 16-pixel lattice: tiles, pieces and the halo are rounded up to multiples of
`SIZE_MULTIPLE` (the store's 2048 chunks already are). Then interior
tiles see the same pixels at the same pooling phase as the whole image does; only context further
than `halo` away is lost, and `HALO_BY_ARCHITECTURE` holds the measured distance beyond which that
no longer changes any output by 1/255 (tests/test_inference.py::test_chunk_seams_are_invisible). Edge tiles
pad the same bottom/right rows as the whole image, so edges match as well.

The model is loaded once per worker process, not per task: tasks carry only the weights path and
its sha256, and `cached_predictor` (`pipeline.inference.predictor_cache`, with the card check `read_card`)
builds the `TorchPredictor` the first time a process sees that (path, sha256, device, half). The
task is `pipeline.inference.tile_forward.predict_piece`, whose module imports no torch (a worker
unpickles tasks in its event loop), one task per forward window (`_pieces`).
Half precision (fp16 autocast) is used on CUDA; deformable convs stay fp32 inside the network;
the CPU runs fp32. Batching: the years inside one block (`years_per_block`) go through the
network as one batch, sharing the terrain; the default of 1 keeps a worker's memory bounded by
one tile (a U-Net's activations at 2048^2 are ~GBs on CPU), raise it on a GPU with memory to spare.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import torch
import xarray as xr
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from catalog.halo_layout import HaloLayout
from pipeline.inference.predictor_cache import cached_predictor, read_card
from pipeline.inference.tile_forward import predict_piece, round_up
from pipeline.model.halo import DEFAULT_HALO, HALO_BY_ARCHITECTURE
from pipeline.model.predictor import default_device
from pipeline.model.weights import ModelCard

__all__ = [
    "DEFAULT_HALO",
    "HALO_BY_ARCHITECTURE",
    "cached_predictor",
    "check_inputs",
    "forward_device",
    "forward_halo",
    "infer_to_store",
    "predict_piece",
    "probability_cube",
    "read_card",
    "round_up",
]

def _pieces(tile: int, halo: int, window: int) -> tuple[int, ...]:
    """A tile's side cut evenly on the 16-px lattice into pieces whose forward pass (piece plus
    `halo` each side) fits `window` (as `tile_forward.predict_block` would cut it): one task each.

    A task that ran a tile's windows one after another kept one thread busy while the others,
    their tiles done, waited (the default area's Sentinel-2 stage: 7 tasks of ~6 s on 2 threads);
    as separate tasks the windows spread over the cluster's threads.
    """
    n = max(1, -(-(tile - 2 * halo) // window))
    step = round_up(-(-tile // n))
    pieces = [min(step, tile - start) for start in range(0, tile, step)]
    if len(pieces) > 1 and pieces[-1] < max(halo, 1):
        pieces[-2:] = [pieces[-2] + pieces[-1]]
    return tuple(pieces)


def _forward_graph(reflectance: da.Array, terrain: Sequence[da.Array], layout: HaloLayout, halo: int, window: int,
                   read: da.Array | None = None, **kwargs) -> da.Array:
    """One forward task per piece of each tile (`_pieces`), each on its tile's block of `reflectance`
    (year, band, y, x) and of each `terrain` plane (y, x), with `halo` px of context (clipped at the
    grid's edge), its piece kept: (year, y, x) on the grid.

    The block holds the tile's own ground around it (`HaloLayout`), so a piece waits only for its
    own tile's block, never a neighbour's. `reflectance` and `read` may come in the pieces the blocks
    were read in (`HaloLayout.read_windows`): a task then takes only the pieces its pass covers and
    copies out its window (`tile_forward.Mosaic`), and no whole block is ever joined. The bands and the
    terrain stay apart: a (year, channel) stack of a whole block (~240 MB for a 2,720 px Sentinel-2 block)
    was one more copy a worker held per tile in flight, where each piece's task builds only its own
    inputs. `read` (y, x; bool): the pixels to infer, with which a piece's pass skips the rest but their
    context (`predict_piece`).
    """
    name = f"predict_piece-{tokenize(reflectance, *terrain, layout, halo, window, read, kwargs)}"
    task = functools.partial(predict_piece, halo=halo, **kwargs)
    axes = []  # per axis: (tile, rows of its block fed to the network, rows of that output kept)
    for axis in (0, 1):
        size, entries = layout.shape[axis], []
        for t, (w, core) in enumerate(zip(layout.windows(axis), layout.cores(axis))):
            start = w.start + core.start
            for piece in _pieces(core.stop - core.start, halo, window):
                lo, hi = max(0, start - halo), min(size, start + piece + halo)
                entries.append((t, slice(lo - w.start, hi - w.start), slice(start - lo, start - lo + piece), piece))
                start += piece
        axes.append(entries)
    parts = {a.name: [layout.parts(a.chunks[-2 + axis], axis) for axis in (0, 1)] for a in (reflectance, read) if a is not None}

    def covering(array: da.Array, lead: tuple, ti: int, tj: int, rows: slice, cols: slice) -> list:
        """The keys of `array`'s pieces of block (ti, tj) under `rows` x `cols`, and their starts in the block."""
        on = [[p for p in parts[array.name][axis][t] if p[1] < span.stop and p[1] + p[2] > span.start]
              for axis, t, span in ((0, ti, rows), (1, tj, cols))]
        keys = [[(array.name, *lead, r[0], c[0]) for c in on[1]] for r in on[0]]
        return [keys, [[r[1] for r in on[0]], [c[1] for c in on[1]]]]

    dsk = {
        (name, yb, i, j): (task, *covering(reflectance, (yb, 0), ti, tj, rows, cols), [(t.name, ti, tj) for t in terrain],
                           rows, cols, keep_rows, keep_cols, *(covering(read, (), ti, tj, rows, cols) if read is not None else ()))
        for yb in range(reflectance.numblocks[0])
        for i, (ti, rows, keep_rows, _) in enumerate(axes[0])
        for j, (tj, cols, keep_cols, _) in enumerate(axes[1])
    }
    chunks = (reflectance.chunks[0], tuple(e[3] for e in axes[0]), tuple(e[3] for e in axes[1]))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[reflectance, *terrain, *([read] if read is not None else [])])
    return da.Array(graph, name, chunks, meta=np.empty((0, 0, 0), np.float32))


FORWARD_WINDOW_PX = {False: 1024, True: 2048}
"""Largest core one forward pass sees, on CPU (False) and CUDA (True): the D-UNet's fp32 CPU
forward takes ~2 kB per input pixel (measured: 1.9 GB at 1024^2), so a 1024 px core with a
128 px halo needs ~3.3 GB per task; fp16 on a GPU about half per pixel, with far more memory."""


def forward_halo(card: ModelCard, halo: int | None = None) -> int:
    """The context a tile's forward pass needs: `halo`, default the card's measured `halo_px`, else
    `HALO_BY_ARCHITECTURE` for its architecture; rounded up to the 16-px lattice (module notes)."""
    if halo is None:
        halo = card.halo_px if card.halo_px is not None else HALO_BY_ARCHITECTURE.get(card.architecture, DEFAULT_HALO)
    if halo < 0:
        raise ValueError(f"halo must be >= 0 pixels, got {halo}")
    return round_up(halo)


def probability_cube(
    cube: xr.Dataset,
    weights: str | Path,
    halo: int | None = None,
    device: str | torch.device | None = None,
    half: bool | None = None,
    *,
    chunk: int | None = None,
    years_per_block: int = 1,
    window: int | None = None,
    card: ModelCard | None = None,
    mirror: bool = False,
) -> xr.DataArray:
    """Lazy (year, y, x) float32 glacier probability of `cube` (a `yearly_cube` Dataset), 0 where no data.

    `halo`: see `forward_halo`; `chunk` (default: the cube's first spatial chunk) is the tile size,
    rounded up to a multiple of 16 and to at least the halo; a tile's context comes from the cube's `reflectance_haloed`
    where it has one for these tiles (`yearly_cube(halo=...)`), else from its neighbours. `device` defaults to
    CUDA when this process sees one; `half` defaults to True exactly on CUDA (True on a CPU: bf16
    where the CPU has bf16 instructions, `pipeline.model.predictor.half_dtype`). `window`: the
    largest core one forward pass sees (default `FORWARD_WINDOW_PX`), which bounds a task's
    memory whatever the chunk size: tiles are cut into pieces of about that size, one task
    each (`_pieces`). `card`: the weights' card when the caller has read
    and checked it already (the pre-flight). `mirror`: each tile goes through the network mirrored
    north-south, for a region in the other hemisphere than the weights' training
    (`pipeline.model.weights.TrainingDomain.mirrors`).
    """
    weights = Path(weights).resolve()
    card = card if card is not None else read_card(weights)
    recipe = card.recipe
    device = str(torch.device(device) if device is not None else default_device())
    half = (torch.device(device).type == "cuda") if half is None else bool(half)
    halo = forward_halo(card, halo)
    if window is None:
        window = FORWARD_WINDOW_PX[torch.device(device).type == "cuda"]
    window = round_up(window)

    refl = cube["reflectance"]
    bands = [str(b) for b in refl["band"].values]
    if tuple(bands) != tuple(recipe.bands):
        missing = [b for b in recipe.bands if b not in bands]
        if missing:
            raise ValueError(
                f"{weights.name} was trained on bands {recipe.bands}; the cube has {bands} (missing {missing}): "
                "use weights trained for this sensor"
            )
        refl = refl.sel(band=list(recipe.bands))
    absent = [t for t in recipe.terrain_sources if t not in cube]
    if absent:
        raise ValueError(f"{weights.name} needs terrain {absent}; the cube has no such variables (build it with yearly_cube)")

    ny, nx = refl.shape[-2:]
    if chunk is None:
        chunk = int(refl.chunks[2][0]) if refl.chunks is not None else max(ny, nx)
    # Tiles start on the 16-px lattice (module notes) and are at least as wide as their context.
    chunk = max(round_up(chunk), halo)
    layout = _input_layout(cube, (ny, nx), chunk, halo)
    bands = _by_tile(cube, "reflectance", layout, band=refl["band"].values).astype(np.float32).rechunk({0: years_per_block, 1: -1})
    terrain = [_by_tile(cube, name, layout).astype(np.float32) for name in recipe.terrain_sources]
    read = _by_tile(cube, "read", layout) if "read" in cube else None  # the pixels to infer (yearly_cube's `near`)
    probability = _forward_graph(bands, terrain, layout, halo, window, read, path=str(weights),
                                 weights_sha256=card.weights_sha256, device=device, half=half, mirror=bool(mirror))
    return xr.DataArray(
        probability,
        dims=("year", "y", "x"),
        coords={"year": refl["year"].values, "y": refl["y"].values, "x": refl["x"].values},
        name="probability",
        attrs={
            "long_name": "glacier probability",
            "units": "1",
            "weights_sha256": card.weights_sha256,
            "architecture": card.architecture,
            "halo": halo,
            "mirrored_north_south": int(bool(mirror)),
        },
    )


def _input_layout(cube: xr.Dataset, shape: tuple[int, int], chunk: int, halo: int) -> HaloLayout:
    """The tiles with the cube's own halo when it was composited that way for these tiles
    (`yearly_cube(halo=...)`, at least `halo`), else with `halo`."""
    attrs = cube["reflectance_haloed"].attrs if "reflectance_haloed" in cube else {}
    if attrs.get("tile_px") == chunk and attrs.get("halo", 0) >= halo:
        halo = int(attrs["halo"])
    return HaloLayout.of(shape, chunk, halo)


def _by_tile(cube: xr.Dataset, name: str, layout: HaloLayout, **sel) -> da.Array:
    """Variable `name` (selected by `sel`) in `layout`: the cube's `{name}_haloed` when it was read
    with these blocks (`yearly_cube(halo=...)`: reflectance and terrain), else cut from the
    neighbouring tiles of `name` (a cube in memory, or one read without a halo)."""
    haloed = cube.get(f"{name}_haloed")
    if haloed is not None:
        data = haloed.sel(sel).data
        if isinstance(data, da.Array) and all(layout.parts(data.chunks[-2 + axis], axis) for axis in (0, 1)):
            return data  # in the layout's blocks, or in the pieces they were read in
    plain = cube[name].sel(sel).data
    return layout.pad(plain if isinstance(plain, da.Array) else da.from_array(plain))


def _indices(cube: xr.Dataset, year: int) -> da.Array:
    """The store's `indices` of `year`'s composite (`pipeline.store.encode_indices`), uint8 on the grid chunked by tile.

    Where the cube holds the composite in the pieces its tiles were read in (`reflectance_haloed`), each
    piece is encoded and the uint8 pieces joined into tiles: joining the float bands instead (24 B a
    pixel, a 2,048 px Sentinel-2 tile's year 100 MB) cost a sparse region more than its indices."""
    from pipeline.store import encode_indices as encode

    bands = tuple(str(b) for b in cube["band"].values)
    haloed = cube.get("reflectance_haloed")
    if haloed is None or not isinstance(haloed.data, da.Array):
        refl = da.asarray(cube["reflectance"].sel(year=year).data)
        return refl.rechunk({0: -1}).map_blocks(encode, bands=bands, drop_axis=0, dtype=np.uint8)
    layout = HaloLayout.of(cube["reflectance"].shape[-2:], int(haloed.attrs["tile_px"]), int(haloed.attrs["halo"]))
    pieces = haloed.sel(year=year).data.rechunk({0: -1}).map_blocks(encode, bands=bands, drop_axis=0, dtype=np.uint8)
    return layout.trim(layout.join(pieces))


def glacier_ids_on_grid(outlines: Any, grid: Any, buffer_m: float, chunk: int) -> xr.DataArray:
    """The inventory (`pipeline.glaciers.inventory.read_inventory`) rasterised on `grid`, outlines grown by `buffer_m`, lazily by store chunk."""
    from pipeline.glaciers.rasterise import rasterize_inventory

    return rasterize_inventory(outlines, grid.transform, grid.shape, grid.crs, buffer_m=buffer_m, chunks=chunk)


def _glacier_tiles(outlines: Any, grid: Any, buffer_m: float | None, chunk: int, source: str) -> Any:
    """The store chunks to infer: those within `buffer_m` of an inventory outline, else all of them."""
    from catalog.tiling import GlacierTiles, glacier_tiles

    if buffer_m is None or outlines is None:
        return GlacierTiles.every_tile(grid, chunk)
    return glacier_tiles(grid, outlines, buffer_m, chunk, source=source)


def check_inputs(cfg: Any, sensor: str, weights: str | Path, years: Sequence[int] | None = None) -> Any:
    """Refuse, before anything is written, the inputs of `sensor` that would fail a run half-way.

    `pipeline.preflight.preflight` for one sensor with these weights, without an output folder:
    the weights against their card, the sensor's bands and training domain, the inventory, the
    DEM tiles over the region, the STAC source and that each of `years` (default: the config's) has
    scenes (found once, `RunInputs.scenes`). The scenes are not read here: an unreadable scene
    is skipped and named in the provenance, not a reason to stop. Returns the `RunInputs`.
    """
    from pipeline.preflight import preflight

    return preflight(cfg, None, [sensor], weights={sensor: weights}, years=years)


def forward_device(device: str | None, client: Any, resources: dict | None) -> str | None:
    """The device the forward tasks run on: `device` if given; on a cluster, CUDA exactly when its
    workers offer a GPU (`resources`), whatever the client has (a SLURM login node without a GPU
    would otherwise send CPU forwards to the GPU workers, a GPU laptop CUDA ones to CPU workers);
    without a cluster None (`probability_cube` picks this process's)."""
    if device is not None or client is None:
        return device
    return "cuda" if resources else "cpu"


def infer_to_store(
    cfg: Any,
    sensor: str,
    weights: str | Path,
    store_url: str | None = None,
    years: Sequence[int] | None = None,
    client: Any = None,
    *,
    halo: int | None = None,
    device: str | None = None,
    chunk_size: int | None = None,
    take_lock: bool = True,
    inputs: Any = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Compute `sensor`'s yearly probabilities for `cfg`'s region into the store at `store_url`.

    Creates the store (or checks an existing one has the same grid and weights), holds its update
    lock, adds each year with its scene ids and `cfg.digest()`, writes the static terrain layers
    (and the inventory's `glacier_id`) once and each year's pending units (one Dask task per unit; a rerun finds none and writes
    nothing). With a distributed `client` whose workers have GPUs, the forward tasks ask for ``{"GPU": 1}``
    and run on CUDA (`device` None: CUDA where workers offer a GPU, else the CPU, whatever the client has).
    `take_lock=False`: the caller already holds the store's lock (a whole `glacierwatch update`).
    `on_progress(done, total)`: after each unit (with the statics; a progress bar).
    Returns ``{"store", "sensor", "weights_sha256", "years": {year: units written}, "static": [...]}``, and
    ``skipped_scenes`` / ``scale_offset`` of every year of the store (each year's as the run that made it
    read it: `RegionStore.note_reads`).
    """
    from catalog.reads import REFUSED_SAYS, unreadable_reads
    from catalog.tiling import read_pieces
    from pipeline.glaciers.inventory import inventory_sha256
    from pipeline.inference.yearly_cube import yearly_cube
    from pipeline.scale.cluster import task_resources
    from pipeline.scale.cluster.resources import SHARE_THE_STORE
    from pipeline.store import RegionStore, StoreError, check_same_inventory, encode_observed, encode_probability
    from pipeline.store.layout import INDICES_NOT_READ, OBSERVED_NOT_READ

    started = time.time()  # skipped reads logged from here on are this call's
    weights = Path(weights).resolve()
    years = list(years if years is not None else cfg.years)
    if inputs is None or inputs.sensors[sensor].weights != weights:
        inputs = check_inputs(cfg, sensor, weights, years)  # before the first write: a refused input leaves the store as it was
    card = inputs.sensors[sensor].card
    store_url = store_url or cfg.path(cfg.store)
    grid = cfg.grid(sensor)

    resources = task_resources(client) if client is not None else None
    device = forward_device(device, client, resources)

    store = RegionStore(store_url)
    create = dict(grids={sensor: grid}, weights_sha256=card.weights_sha256, chunk_size=chunk_size or cfg.tiling.tile_px)
    if not store.exists():
        # The lock file lives inside the store, so a new store's layout is made before the lock
        # can be taken (two first runs racing here would both create the same layout).
        RegionStore.create(store_url, **create)
    # a southern region for networks that saw the northern sun only (or the reverse): tiles go through them mirrored
    mirror = card.domain is not None and card.domain.mirrors(cfg.region.latitude())
    summary: dict[str, Any] = {"store": store.url, "sensor": sensor, "weights_sha256": card.weights_sha256, "years": {}, "static": [],
                               "mirrored_north_south": mirror}
    scheduler = None if client is not None else "threads"
    annotations = {"resources": resources} if resources else {}
    held = store.lock(f"inference {sensor} {years[0]}-{years[-1]}") if take_lock else contextlib.nullcontext()
    with held:
        store = RegionStore.create(store_url, **create)  # refuses another grid or other weights
        outlines = inputs.inventory
        inventory_digest = inventory_sha256(outlines, cfg.analysis.glacier_buffer_m) if outlines is not None else None
        if inventory_digest is not None:  # and a glacier_id from other outlines (inference alone has no pre-flight of the store)
            check_same_inventory(store, [sensor], inventory_digest, f"inventory {inputs.inventory_path}")
        chunk = store.chunk_size
        # Each tile composited with its own context: no tile waits for its neighbours' composites (module notes).
        tiles = _glacier_tiles(outlines, grid, cfg.tiling.buffer_m, chunk, source=f"inventory {inputs.inventory_path}")
        # Of each selected tile only the pieces within the tiling buffer of an outline are read and composited, and only
        # the pixels within it inferred; never fewer than the statistics' glacier zones (analysis.glacier_buffer_m).
        inferred_m = None if tiles.buffer_m is None else max(tiles.buffer_m, cfg.analysis.glacier_buffer_m)
        near = None if inferred_m is None else (outlines, inferred_m, f"inventory {inputs.inventory_path}")
        cube = yearly_cube(cfg, sensor, years=years, chunks=chunk, dem_items=inputs.dem_items or None, halo=forward_halo(card, halo),
                           near=near, scenes=inputs.scenes.get(sensor))  # the pre-flight's search, not a second one
        terrain = {name: cube[var] for name, var in (("dem", "elevation"), ("slope", "slope"), ("aspect", "aspect"))
                   if not store.static_complete(sensor, name)}
        statics = dict(terrain)
        if outlines is not None and not store.static_complete(sensor, "glacier_id"):
            statics["glacier_id"] = glacier_ids_on_grid(outlines, grid, cfg.analysis.glacier_buffer_m, chunk)
        # Computed with the units (below), not before them: on their own the terrain's few tasks left the
        # workers mostly idle for seconds while the first scenes waited. A chunk's with its tile's first unit,
        # which makes the same terrain (held for the tile's years: compute_batches).
        static_tasks = store.static_tasks_by_chunk(sensor, statics)
        summary["static"] += list(statics)
        pieces = read_pieces(tiles, outlines, forward_halo(card, halo), cfg.tiling.read_px, inferred_m)  # as yearly_cube reads
        summary["tiles"] = {"inferred": tiles.n_tiles, "total": tiles.n_tiles_total, "fraction_of_pixels": tiles.fraction_read,
                            "buffer_m": tiles.buffer_m, "fraction_read": pieces.pixels / tiles.pixels_total}
        summary["scenes"] = {int(y): list(cube.attrs["scene_ids"][str(y)]) for y in years}
        summary["skipped_scenes"] = list(cube.attrs.get("skipped_scenes", []))
        summary["scale_offset"] = dict(cube.attrs.get("scale_offset", {}))  # per item: what was applied and why
        for year in set(years) & set(store.unread_years(sensor)):
            store.reset_year(sensor, year)  # made without part of a scene last time (`note_unread`): made again
        for year in years:
            store.add_year(sensor, year, scene_ids=cube.attrs["scene_ids"][str(year)], config_hash=cfg.digest(),
                           method=cfg.year_method(sensor) | {"mirrored_north_south": mirror})  # a series is fed one way
        pending = {y for y in years if store.pending_units(sensor, [y])}
        if pending:
            with dask.annotate(**annotations):
                probability = probability_cube(
                    cube.sel(year=sorted(pending)), weights, halo, device=device, half=cfg.inference.half, chunk=chunk, card=card,
                    mirror=mirror,
                )
        units, free_work = [], []  # the unit tasks (store.write_probability, compute=False), computed in batches below
        for year in years:
            if year not in pending:
                summary["years"][year] = 0
                continue
            free, free_tasks = store.write_ice_free(sensor, year, tiles.tiles, compute=False)  # on the workers, with the year
            encoded = probability.sel(year=year).data.map_blocks(encode_probability, dtype=np.uint8)
            # What was observed, and when, is written by the same unit task as the probability
            # (DESIGN.md "Observed vs. glacier"): a cloudy pixel or a DEM void is 0 here, not "not glacier".
            counts = da.asarray(cube["clear_count"].sel(year=year).data)
            elevation = da.asarray(cube["elevation"].data).rechunk(counts.chunks)
            observed = da.map_blocks(encode_observed, counts, elevation, dtype=np.uint8)
            doy = cube["doy"].sel(year=year).data.astype(np.uint16)
            # The classic index masks of the same composite, by the same task: statistics compare
            # the model with them per glacier (issue "never guess silently"), from stored layers only.
            indices = _indices(cube, year)
            if "read" in cube:  # pixels beyond the tiling buffer of every outline: "not read", as an unselected tile's
                read = da.asarray(cube["read"].data).rechunk(counts.chunks)
                observed = da.where(read, observed, np.uint8(OBSERVED_NOT_READ))
                doy = da.where(read, doy, np.uint16(0))
                indices = da.where(read, indices, np.uint8(INDICES_NOT_READ))
            # Only the forward passes ask for a GPU (above): the unit tasks that compress and write
            # every layer run on any worker. Pinned to the GPU, all of them queued on one worker's
            # threads in the H200's x4 run, which was no faster than the same 16 cores without a
            # GPU (docs/scaling.md).
            written, tasks = store.write_probability(
                sensor, year, encoded, observed=observed, doy=doy, indices=indices, tiles=tiles.tiles, compute=False
            )
            units += [((u.row, u.col), year, task) for u, task in zip(written, tasks)]
            free_work += free_tasks
            summary["years"][year] = len(written) + len(free)
        ordered = units_in_order(units)
        # Every year of a tile reads its terrain (the DEM warped to the tile with its halo, slope, aspect): held
        # from its first unit to its last, it is made once a tile instead of once a unit.
        terrain = cube["terrain_haloed"].data.to_delayed(optimize_graph=False)[0] if "terrain_haloed" in cube else None
        shared = [None if terrain is None else terrain[tile] for tile, _ in ordered] or [None]
        compute_batches(_unit_batches(ordered, static_tasks, free_work), client, scheduler, in_flight=_threads(client),
                        shared=shared, on_progress=on_progress)
        # every unit the workers finished must be in the store as this process reads it: a worker on a node
        # without the store's filesystem (one that joined after the start's check) wrote where no one looks
        lost = {year: len(units) for year, n in summary["years"].items() if n and (units := store.pending_units(sensor, [year]))}
        if lost:
            said = ", ".join(f"{n} of {year}" for year, n in sorted(lost.items()))
            raise StoreError(
                f"{sensor}: the workers finished units ({said}) that this process does not find in the store {store_url}: "
                f"some worker writes where this process does not read; {SHARE_THE_STORE}, then run the same command "
                "again: what is in the store is kept"
            )
        made_from = {"glacier_id": {"inventory_sha256": inventory_digest}} if "glacier_id" in statics else {}
        store.mark_statics_complete(sensor, statics, attrs=made_from)
        inside = _skipped_windows(unreadable_reads(client, since=started), cube.attrs.get("asset_items", {}))
        summary["skipped_scenes"] += inside
        # a year made without a window the storage refused (an expired link, credentials) stays as written (this
        # run's tables and masks use it) and is made again by the next run (reset above), when the read may
        # succeed: a transient fault is not a loss for good. Damage inside a file is not retried every run
        # (its message says to re-fetch the scene and reset the year).
        refused = [r for r in inside if REFUSED_SAYS in r["reason"] and r.get("year") is not None]
        for year in sorted({r["year"] for r in refused}):
            store.note_unread(sensor, int(year), [r["item_id"] for r in refused if r["year"] == year])
        # what each year made here read, kept with the year; the summary then speaks for every year of the store.
        # A year this run wrote nothing of keeps its record, unless a run stopped before recording it.
        records = store.year_records(sensor)
        for year, written in summary["years"].items():
            if written or "scale_offset" not in records.get(year, {}):
                ids = set(summary["scenes"][year])
                store.note_reads(sensor, year, [r for r in summary["skipped_scenes"] if r.get("year") == year],
                                 {i: v for i, v in summary["scale_offset"].items() if i in ids})
        undated = [r for r in summary["skipped_scenes"] if r.get("year") is None]
        summary["skipped_scenes"], summary["scale_offset"] = store.recorded_reads(sensor)
        summary["skipped_scenes"] += undated
    return summary


def _threads(client: Any) -> int:
    """Threads that run tasks: the cluster's, else this machine's cores."""
    if client is not None:
        return max(1, sum(client.nthreads().values()))
    return os.cpu_count() or 1


def compute_batches(batches: list[list], client: Any, scheduler: str | None, in_flight: int = 2,
                    shared: Sequence[Delayed | None] | None = None,
                    on_progress: Callable[[int, int], None] | None = None) -> None:
    """Compute `batches`, at most `in_flight` at a time, in order: on a distributed client the next
    batch is submitted as soon as any running one is done (dask runs earlier submissions first), so
    no thread idles at a batch's end waiting for a slower one, and memory stays bounded by
    `in_flight` batches' tiles. A failure cancels what is in flight.

    `shared` (one per batch, or None): a task its batch shares with other batches (a block of an
    array's `to_delayed()`: a tile's terrain, which each of its years reads). On a distributed client it is computed once and
    kept from the submission of the first batch that names it until the last one is done, so the
    batches between them reuse it instead of computing it again; keep the batches that share one
    together, or it is kept that long. `on_progress(done, total)`: after each batch (a progress bar)."""
    progress = on_progress or (lambda done, total: None)
    progress(0, len(batches))
    shared = list(shared) if shared is not None else [None] * len(batches)
    if len(shared) != len(batches):
        raise ValueError(f"{len(shared)} shared tasks for {len(batches)} batches: give one (or None) per batch")
    if client is None:  # a local scheduler: `in_flight` batches at a time
        for start in range(0, len(batches), max(1, in_flight)):
            dask.compute(*(task for batch in batches[start : start + in_flight] for task in batch), scheduler=scheduler)
            progress(min(start + max(1, in_flight), len(batches)), len(batches))
        return
    from distributed import as_completed

    last = {task.key: index for index, task in enumerate(shared) if task is not None}
    held: dict[Any, Delayed] = {}  # shared key -> its persisted task, while batches still need it
    todo = list(reversed(batches))
    owner: dict[Any, int] = {}  # future -> its batch
    left: dict[int, int] = {}  # running batch -> its futures not yet done
    done = as_completed(loop=client.loop)

    completed = 0

    def finished(index: int) -> None:
        nonlocal completed
        completed += 1
        progress(completed, len(batches))
        task = shared[index]
        if task is not None and last[task.key] == index:
            held.pop(task.key, None)  # batches still running that use it keep it until they are done

    def submit() -> None:
        while todo and len(left) < in_flight:
            index = len(batches) - len(todo)
            task = shared[index]
            if task is not None and task.key not in held:
                held[task.key] = client.persist(task)
            futures = client.compute(todo.pop())
            if futures:
                left[index] = len(futures)
                owner.update(dict.fromkeys(futures, index))
                done.update(futures)
            else:
                finished(index)

    try:
        submit()
        for future in done:
            future.result()  # the task's error, if it failed
            index = owner.pop(future)
            left[index] -= 1
            if not left[index]:
                del left[index]
                finished(index)
                submit()
    except BaseException:
        client.cancel(list(owner))
        raise
    finally:
        held.clear()


def _unit_batches(ordered: list[tuple[tuple[int, int], Any]], statics: dict[tuple[int, int], list], free_work: list
                  ) -> list[list]:
    """One batch per unit (`units_in_order`); a chunk's static writes with its tile's first unit, which
    makes the same terrain; the rest (nothing to read, or no unit to share a terrain with) spread out."""
    batches = [[task] for _, task in ordered] or [[]]
    first: dict[tuple[int, int], int] = {}
    for index, (tile, _) in enumerate(ordered):
        first.setdefault(tile, index)
    rest = list(free_work)
    for tile, tasks in statics.items():
        if tile in first:
            batches[first[tile]] += tasks
        else:
            rest += tasks
    return [batch + rest[i :: len(batches)] for i, batch in enumerate(batches)]


def units_in_order(units: list[tuple[tuple[int, int], int, Any]]) -> list[tuple[tuple[int, int], Any]]:
    """(tile, task) of the units ((tile, year, task)) tile by tile, each tile's years in order: the
    order `infer_to_store` computes them in, one unit per batch, as many in flight as the cluster has
    threads (`compute_batches`), a tile's terrain kept while its years run.

    Computed all at once, a worker held the composites of every tile it had started (the scheduler
    reads and composites ahead of the slower forward passes): per-worker memory grew with the
    region. Batches of whole years bounded that only while a year had few tiles (a year of the
    Tian Shan is ~1,500), batches of a few units made threads wait at each batch's end. Since a
    tile needs nothing of its neighbours (`HaloLayout`: its own scenes and DEM), units run one by
    one in a sliding window: a worker holds about one unit per thread, whatever the region. Tile by
    tile (it was year by year), a tile's terrain is made once and kept only while its years run:
    made anew for every year, the DEM's warp, slope and aspect took a sixth of a sparse region's
    Sentinel-2 thread time and most of its warped reads.
    """
    return [(tile, task) for tile, _, task in sorted(units, key=lambda unit: (unit[0], unit[1]))]


def _skipped_windows(reads: list[dict], asset_items: dict) -> list[dict]:
    """Skipped-scene records (item_id, href, reason, year) for windows that could not be read inside a COG."""
    records = []
    for read in reads:
        owner = asset_items.get(read["href"].split("?")[0])
        if owner is None:  # another sensor's or another run's scene
            continue
        records.append({"item_id": owner.get("item_id", ""), "href": read["href"], "year": owner.get("year"),
                        "reason": f"a window inside the COG could not be read (left out of that chunk): {read['reason']}"})
    return records
