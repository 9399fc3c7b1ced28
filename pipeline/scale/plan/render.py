"""The plan as rich tables: grids and tiles, scenes per year, work, time per stage, the annual update.

Only formatting: every number shown is computed in `estimate`; `render_plan` prints to the
console it is given.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from catalog.redact import redact
from pipeline.scale.plan.estimate import Plan
from pipeline.scale.plan.tile_sizes import CHUNK_COST_PX, TILE_COST_PX, work_by_size

__all__ = ["render_plan"]


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:,.0f} B"
        n /= 1000
    return ""


def _px(n: float) -> str:
    for unit, scale in (("Gpx", 1e9), ("Mpx", 1e6), ("kpx", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,.0f} px"


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:,.0f} s"
    if s < 2 * 3600:
        return f"{s / 60:,.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:,.1f} h"
    return f"{s / 86400:,.1f} d"


def _render_tile_sizes(plan: Plan, console: Console) -> None:
    """The inventory's tiles at other store tile sizes, and a size to set where one needs far less work."""
    compared = [p for p in plan.sensors if p.tile_sizes]
    if not compared:
        return
    table = Table(title="the same outlines at other tile sizes (per year, halo included)", title_justify="left")
    for col in ("sensor", "tile", "tiles", "of grid", "network input", "work vs configured"):
        table.add_column(col, justify="left" if col == "sensor" else "right")
    for p in compared:
        mine = next(o for o in p.tile_sizes if o.tile_px == p.tiles.tile_px)
        for o in p.tile_sizes:
            table.add_row(
                p.sensor, f"{o.tile_px:,} px" + (" (configured)" if o is mine else ""),
                f"{o.tiles.n_tiles:,} / {o.tiles.n_tiles_total:,}", f"{100 * o.tiles.fraction_read:.1f} %", _px(o.network_px),
                f"{o.work_px / mine.work_px:.2f}x",
            )
    console.print(table)
    console.print(
        f"  work: network input + {TILE_COST_PX / 1e6:.3g} Mpx per tile + {CHUNK_COST_PX / 1e6:.2g} Mpx per store chunk, "
        "what each cost besides its pixels in measured runs (pipeline/scale/plan/tile_sizes.py)",
        highlight=False, markup=False,
    )
    size = plan.suggested_tile_px
    if size is not None:
        configured = compared[0].tiles.tile_px
        work = work_by_size([p.tile_sizes for p in compared])
        share = work[size] / work[configured]
        console.print(
            f"  {size:,} px store tiles need {share:.0%} of the configured {configured:,} px tiles' work "
            f"({' and '.join(p.sensor for p in compared)}): set `tiling.tile_px: {size}` before the region's store is first "
            "made (a store keeps its tile size)."
            + (" Real COGs have 1,024 px internal tiles: smaller windows decode some twice." if size < configured else ""),
            highlight=False, markup=False,
        )


def render_plan(plan: Plan, console: Console) -> None:
    """Print the plan as rich tables: grids and tiles, scenes per year, work, time, the annual update."""
    w, s, e, n = plan.bbox
    console.print(Text.assemble(
        (f"plan: {plan.region}", "bold"),
        f"  bbox {w:g}..{e:g} E, {s:g}..{n:g} N  years {plan.years[0]}-{plan.years[-1]}  season {plan.season[0]}..{plan.season[1]}",
    ))
    grids = Table(title="grids and tiles (no pixel read)", title_justify="left")
    tile_px = plan.sensors[0].tiles.tile_px
    for col in ("sensor", "grid", "rows x cols", "pixels", f"tiles of {tile_px} px", "of grid", "read incl. halo"):
        grids.add_column(col, justify="right" if col not in ("sensor", "grid") else "left")
    for p in plan.sensors:
        rows, cols = p.grid.shape
        grids.add_row(
            p.sensor, f"EPSG:{p.grid.epsg} {p.grid.resolution:g} m", f"{rows:,} x {cols:,}", _px(p.tiles.pixels_total),
            f"{p.tiles.n_tiles:,} / {p.tiles.n_tiles_total:,}", f"{100 * p.tiles.fraction_read:.1f} %",
            f"{100 * p.pixels_read / p.tiles.pixels_total:.1f} %",
        )
    console.print(grids)
    for p in plan.sensors:
        console.print(f"  {p.sensor}: {p.tiles_from}", highlight=False, markup=False)
    _render_tile_sizes(plan, console)
    d = plan.distortion
    res = plan.sensors[0].grid.resolution
    console.print(
        f"  grid EPSG:{d.epsg}: a {res:g} m pixel is {res / d.scale[1]:.2f}-{res / d.scale[0]:.2f} m on the ground, "
        f"areas from pixel counts {100 * (d.areal[0] - 1):+.2f} % to {100 * (d.areal[1] - 1):+.2f} %, "
        f"grid north within {d.convergence_deg:.1f} deg of true north",
        highlight=False,
    )
    if d.problem:
        console.print(Text.assemble(("  problem:", "bold yellow"), f" {d.problem}"), highlight=False)

    scenes = Table(title="scenes per year", title_justify="left")
    scenes.add_column("year")
    for p in plan.sensors:
        scenes.add_column(f"{p.sensor} ({p.scenes_kind})", justify="right")
    for y in plan.years:
        scenes.add_row(str(y), *(f"{p.scenes[y]:,}" for p in plan.sensors))
    scenes.add_row("total", *(f"{sum(p.scenes.values()):,}" for p in plan.sensors), style="bold")
    console.print(scenes)
    for p in plan.sensors:
        label = ("estimated", "yellow") if p.scenes_kind == "estimated" else "searched"
        console.print(Text.assemble(f"  {p.sensor}: ", label, f": {redact(p.scenes_note)}"), highlight=False)

    work = Table(title=f"work, {len(plan.years)} years", title_justify="left")
    for col in ("sensor", "bytes to read", "scene observations", "pixels to infer", "network input (tiles + halo)"):
        work.add_column(col, justify="right" if col != "sensor" else "left")
    for p in plan.sensors:
        ny = len(plan.years)
        work.add_row(
            p.sensor, _bytes(sum(p.bytes_read.values())), _px(sum(p.observations_px.values())),
            _px(p.tile_px_per_year * ny), _px(p.network_px * ny),
        )
    console.print(work)

    c = plan.cluster
    times = Table(title=f"expected time on {c.kind}: {c.workers} workers, {c.cores} cores, {c.gpus} GPUs", title_justify="left")
    for col in ("stage", "work", "wall time", "rate"):
        times.add_column(col, justify="right" if col in ("work", "wall time") else "left")
    for st in plan.stages:
        unit = "GPU-h" if st.device == "GPU" else "core-h"
        times.add_row(st.stage, f"{st.work_s / 3600:,.1f} {unit}", _duration(st.wall_s), st.rate_kind)
    times.add_row("total", "", _duration(plan.wall_s), "", style="bold")
    console.print(times)
    console.print(f"  cluster: {c.note}; stages run one after another, each on all cores", highlight=False, markup=False)

    u = plan.update
    line = (
        f"annual update ({u.year}, costed like {u.year - 1}: one new year, all sensors) in <= {u.hours:g} h: "
        f"{u.cpu_only_cores:,} cores (CPU only)"
    )
    if u.with_gpu_gpus:
        line += f", or {u.with_gpu_cores:,} cores + {u.with_gpu_gpus:,} GPU(s) ({u.gpu_rate_kind} GPU rate)"
    console.print(Text(line, style="bold"), highlight=False)
    notes = list(u.notes) + [f"{p.sensor}: {note}" for p in plan.sensors for note in p.notes]
    for note in notes:
        console.print(f"  note: {note}", highlight=False, markup=False)
    machine = plan.rates.machine or "custom rates"
    console.print(f"  rates: {machine}; GPU rates marked projected are assumptions, not measurements", highlight=False, markup=False)
