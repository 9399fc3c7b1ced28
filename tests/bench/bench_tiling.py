"""Glacier-buffer tiling: the share of a region's grid that lies in tiles near glaciers (target <= 50 %).

    .venv/bin/python tests/bench/bench_tiling.py AREA [AREA ...] [--config configs/tianshan.yaml]
        [--synthetic SIZE:MASSIF_SHARE ...] [--json OUT.json]

For each generated study area (its inventory outlines on its 10 m Sentinel-2 grid) and, with
--config, for a config whose inventory file exists: `catalog.tiling.glacier_tiles` with the
store's tile size (2048 px) and the default 2 km buffer, the same at 512 px tiles, what a run
reads of them (`catalog.tiling.read_pieces`: the pieces near an outline, each only over its box,
with the halo), and the pixel-level share within the buffer (`glacier_pixel_mask`: what a run
infers where pieces are cut, the floor any tiling can reach).
Reads outlines only; no pixel. `--synthetic 16:0.06` draws a study area's world (x16 the default
area, 6 % of its ~5 km cells holding a massif: scattered massifs over ice-free land, as in a real
range) and measures its inventory without rendering a scene.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


HALO_PX = 96
"""The shipped Sentinel-2 network's halo (its model card), the context each piece read carries."""


def measure(grid, outlines, source: str, pixel_level: bool = True) -> dict:
    from catalog.halo_layout import DEFAULT_READ_PX
    from catalog.tiling import (
        DEFAULT_BUFFER_M,
        DEFAULT_TILE_PX,
        PIXEL_MASK_LIMIT,
        glacier_pixel_mask,
        glacier_tiles,
        read_pieces,
    )

    t = time.perf_counter()
    res: dict = {"source": source, "grid": list(grid.shape), "outlines": len(outlines), "buffer_m": DEFAULT_BUFFER_M,
                 "halo_px": HALO_PX,
                 "glacier_km2": float(outlines.to_crs(grid.epsg).area.sum() / 1e6),
                 "grid_km2": grid.shape[0] * grid.shape[1] * grid.resolution**2 / 1e6}
    for tile_px in (DEFAULT_TILE_PX, 512):
        tiles = glacier_tiles(grid, outlines, DEFAULT_BUFFER_M, tile_px, source=source)
        read = read_pieces(tiles, outlines, HALO_PX, DEFAULT_READ_PX, source=source)
        res[f"tiles_{tile_px}"] = {"selected": tiles.n_tiles, "total": tiles.n_tiles_total, "fraction": tiles.fraction_read,
                                   "read_fraction": read.pixels / tiles.pixels_total}
    if pixel_level and grid.shape[0] * grid.shape[1] <= PIXEL_MASK_LIMIT:
        res["pixel_fraction"] = float(glacier_pixel_mask(grid, outlines, DEFAULT_BUFFER_M, source=source).mean())
    res["seconds"] = time.perf_counter() - t
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("areas", type=Path, nargs="*")
    ap.add_argument("--config", type=Path, help="a config whose inventory exists (e.g. configs/tianshan.yaml)")
    ap.add_argument("--synthetic", nargs="*", default=[], metavar="SIZE:MASSIF_SHARE",
                    help="drawn worlds (outlines only, no scenes), e.g. 16:0.06 for a sparse x16 area")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import geopandas as gpd

    from catalog.grid import TargetGrid

    out: dict = {"areas": {}}
    for area in args.areas:
        meta = json.loads((area / "synthetic.json").read_text())
        grid = TargetGrid.from_lonlat_bbox(tuple(meta["bbox"]), 10)
        outlines = gpd.read_parquet(area / "inventory" / "glaciers.parquet")
        out["areas"][str(area)] = r = measure(grid, outlines, str(area))
        r["size"] = meta["spec"]["size"]
        r["massif_share"] = meta["spec"].get("massif_share", 1.0)
    if args.synthetic:
        from catalog.synthetic.area_spec import StudyAreaSpec
        from catalog.synthetic.area_world import build_world
        from catalog.synthetic.reference_data import inventory_outlines
    for drawn in args.synthetic:
        size, share = (float(v) for v in drawn.split(":"))
        spec = StudyAreaSpec(size=size, massif_share=share)
        grid = TargetGrid.from_lonlat_bbox(spec.bbox(), 10)
        out["areas"][f"drawn x{size:g}, massif share {share:g}"] = r = measure(grid, inventory_outlines(build_world(spec)), drawn)
        r["size"], r["massif_share"] = size, share
    if args.config:
        from pipeline.config import load_config

        cfg = load_config(args.config)
        inventory = Path(cfg.inventory_path())
        if inventory.is_file():
            from pipeline.glaciers.inventory import read_inventory

            out["config"] = measure(cfg.grid("sentinel-2"), read_inventory(inventory), str(inventory), pixel_level=False)
        else:
            out["config"] = {"source": str(inventory), "missing": True}
    for name, r in [*out["areas"].items(), *([("config", out["config"])] if "config" in out else [])]:
        if r.get("missing"):
            print(f"{name}: no inventory at {r['source']}: not measured")
            continue
        t, s = r["tiles_2048"], r["tiles_512"]
        pixel = f", pixels within {r['buffer_m']:g} m {100 * r['pixel_fraction']:.1f} %" if "pixel_fraction" in r else ""
        print(f"{name}: grid {r['grid']}, {r['outlines']} outlines ({r['glacier_km2']:.1f} of {r['grid_km2']:.1f} km2): "
              f"2048-px tiles {t['selected']}/{t['total']} = {100 * t['fraction']:.1f} % of pixels, "
              f"512-px tiles {s['selected']}/{s['total']} = {100 * s['fraction']:.1f} %, read at 2048 px "
              f"{100 * t['read_fraction']:.1f} %{pixel}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
