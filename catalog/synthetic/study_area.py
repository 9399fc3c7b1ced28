"""The embedded study area: a synthetic massif at Yilian Habirga, written as a STAC catalog.

`generate_study_area` builds the terrain and glaciers, renders every acquisition of
2016-2022 (Sentinel-2 tiles in UTM 44N and 45N, Landsat scenes on two WRS-2 paths), and
writes COGs, STAC items, a Copernicus-DEM-like DEM, an inventory of outlines, and - kept
apart under `truth/` - the true outline, terminus and surface class of every glacier every
year. Deterministic from (seed, size); written to a temporary folder and moved into place
only when complete, so a failed run leaves nothing behind: an exception, Ctrl-C or SIGTERM kills
the worker pool and removes the temporary folder, workers die with their parent even on kill -9,
and the folders of such a killed generation are removed by the next one. Asset hrefs are
relative to their item, so the catalog stays valid after the move (and wherever it is copied).

This module runs the generation in that order; the parts live beside it:
area_spec (what to generate), area_world (massifs, glaciers, classes per year), overpasses
(acquisitions and product grids), scene_products (rendering and writing scene COGs in the
workers), reference_data (DEM, inventory, truth), area_catalog (STAC), area_folder (the
temporary and finished folders) and worker_pool (the forked pool and how it dies).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from catalog.synthetic.area_catalog import write_catalog
from catalog.synthetic.area_folder import (
    REQUIRED,
    existing_area,
    incomplete_folder,
    move_into_place,
    study_area_at,
    write_marker,
)
from catalog.synthetic.area_spec import GENERATOR_VERSION, StudyArea, StudyAreaSpec
from catalog.synthetic.area_world import INVENTORY_YEAR, WORLD_EPSG, build_world
from catalog.synthetic.overpasses import UTM_BOUNDARY_LON, plan_acquisitions, product_footprints
from catalog.synthetic.reference_data import write_dem, write_truth_and_inventory
from catalog.synthetic.scene_products import (
    LANDSAT_NOISE,
    S2_NOISE,
    share_with_workers,
    to_fp,
    write_acquisition,
)
from catalog.synthetic.surface import GLACIER_CLASSES
from catalog.synthetic.worker_pool import run_forked, sigterm_raises_terminated


def generate_study_area(
    out: Path,
    spec: StudyAreaSpec = StudyAreaSpec(),
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> StudyArea:
    """Write the study area to `out`, an absent or empty folder; return the one already there when
    it is this study area and complete, refuse anything else (FileExistsError says what to do)."""
    out = Path(out).absolute()  # relative hrefs are made from absolute paths: a relative `out` broke them
    existing = existing_area(out, spec)
    if existing is not None:
        return existing
    tmp = incomplete_folder(out)
    with sigterm_raises_terminated():
        try:
            state = build_world(spec)
            share_with_workers(state)  # before the pool forks: the workers render this world
            fps = product_footprints(state.grid)
            plan = plan_acquisitions(spec)
            items: dict[str, list[dict]] = {"sentinel-2-l2a": [], "landsat-c2-l2": [], "cop-dem-glo-30": []}
            done = 0

            def collect(written: list[dict]) -> None:
                nonlocal done
                for d in written:
                    items[d["collection"]].append(d)
                done += 1
                if on_progress:
                    on_progress(done, len(plan))

            jobs = [(acq, prods, fps, tmp) for acq, prods in plan]
            run_forked(write_acquisition, jobs, workers or min(os.cpu_count() or 1, 4), collect)
            items["cop-dem-glo-30"] = write_dem(state, tmp)
            write_truth_and_inventory(state, spec, tmp)
            write_catalog(tmp, items)
            n_glaciers, n_items = len(state.glaciers), {k: len(v) for k, v in items.items()}
            write_marker(tmp, spec, n_glaciers, n_items)
            move_into_place(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            share_with_workers(None)
    return study_area_at(out, spec, n_glaciers, n_items)


__all__ = [
    "GENERATOR_VERSION",
    "GLACIER_CLASSES",
    "INVENTORY_YEAR",
    "LANDSAT_NOISE",
    "REQUIRED",
    "S2_NOISE",
    "UTM_BOUNDARY_LON",
    "WORLD_EPSG",
    "StudyArea",
    "StudyAreaSpec",
    "generate_study_area",
    "to_fp",
]
