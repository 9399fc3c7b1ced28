"""The output folder of a generation: what a finished study area holds, and the temporary one.

A study area is written to `<out>-incomplete-<pid>` and moved into place only when complete,
with `synthetic.json` (the spec's fingerprint) marking it as this study area. So a folder at
`out` is either absent, an empty one made for it, a finished area that is returned as it is, or
something else that is never overwritten. The temporary folders of a generation killed with -9
(its pid gone) are removed by the next generation into the same `out`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from catalog.synthetic.area_spec import GENERATOR_VERSION, StudyArea, StudyAreaSpec

# What a finished study area holds; a folder that lacks one of them is not reported as done.
REQUIRED = ("catalog.json", "inventory/glaciers.parquet", "truth/outlines.parquet")
MARKER = "synthetic.json"


def study_area_at(out: Path, spec: StudyAreaSpec, n_glaciers: int, n_items: dict[str, int]) -> StudyArea:
    """The paths of the study area written at `out`."""
    return StudyArea(out, out / "catalog.json", out / "inventory" / "glaciers.parquet", out / "truth", spec,
                     n_glaciers, n_items)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned(out: Path) -> None:
    """Temporary folders of generations into `out` whose process is gone (killed with -9)."""
    for folder in out.parent.glob(f"{out.name}-incomplete-*"):
        pid = folder.name.rpartition("-")[2]
        if folder.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def existing_area(out: Path, spec: StudyAreaSpec) -> StudyArea | None:
    """The study area already at `out` (None when `out` is absent or an empty folder to fill)."""
    if not out.exists():
        return None
    if out.is_dir() and not any(out.iterdir()):
        return None
    marker = out / MARKER
    try:
        meta = json.loads(marker.read_text()) if marker.is_file() else None
    except (OSError, ValueError):
        meta = None
    if meta is None or meta.get("fingerprint") != spec.fingerprint():
        raise FileExistsError(
            f"{out} already exists and is not this study area (seed, size or massif_share differ, or it is not one): "
            "choose another output folder (an absent or empty one) or remove it"
        )
    missing = [name for name in REQUIRED if not (out / name).exists()]
    if missing:
        raise FileExistsError(
            f"{out} is this study area but incomplete ({', '.join(missing)} missing): remove the folder "
            f"and run `glacierwatch synth --out {out}` again to regenerate it (same seed and size, same files)"
        )
    return study_area_at(out, spec, meta["n_glaciers"], meta["n_items"])


def incomplete_folder(out: Path) -> Path:
    """A fresh, empty temporary folder beside `out` for this process, abandoned ones removed."""
    # No dot in the name: pystac would take a suffix for a file name and write beside the folder.
    tmp = out.with_name(f"{out.name}-incomplete-{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def write_marker(folder: Path, spec: StudyAreaSpec, n_glaciers: int, n_items: dict[str, int]) -> None:
    """`synthetic.json`: what generated the folder, read back by `existing_area`."""
    meta = {
        "generator": "glacierwatch synthetic study area",
        "version": GENERATOR_VERSION,
        "fingerprint": spec.fingerprint(),
        "spec": asdict(spec),
        "bbox": spec.bbox(),
        "n_glaciers": n_glaciers,
        "n_items": n_items,
    }
    (folder / MARKER).write_text(json.dumps(meta, indent=2))


def move_into_place(tmp: Path, out: Path) -> None:
    """The finished temporary folder becomes `out` (absent, or an empty folder made for it)."""
    if out.is_dir():  # an empty folder the user made for it (checked by existing_area)
        out.rmdir()
    tmp.rename(out)
