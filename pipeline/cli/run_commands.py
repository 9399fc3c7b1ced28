"""The run commands: `run` the whole study, `update` it by one year, `plan` its work beforehand.

A run's options (output folder, cluster, `--check`), its pre-flight report and the summary it
prints at the end live here; the run itself is `pipeline.run.run_study`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from pydantic import ValidationError
from rich.table import Table

from catalog.redact import RedactingConsole as Console  # every output redacted, no markup read
from pipeline.cli.console import console
from pipeline.cli.errors import fail
from pipeline.cli.options import ConfigOption, load_config_or_exit
from pipeline.config import Config
from pipeline.model import require_model

OutOption = Annotated[Path, typer.Option("--out", "-o", help="folder for the store, tables, outlines, report and STAC catalog")]
CheckOption = Annotated[
    bool, typer.Option("--check", help="only the pre-flight: check every input (offline first), write nothing")
]
ClusterOption = Annotated[
    Optional[str], typer.Option(help="local | slurm | kubernetes | a scheduler address (tcp://...); default: cluster in the config")
]


def _glacier_years(n) -> str:
    """"1 glacier-year", "3 glacier-years"."""
    return f"{int(n)} glacier-year{'' if int(n) == 1 else 's'}"


def with_cluster(cfg: Config, cluster: str | None) -> Config:
    """`cfg` with its cluster section replaced by `--cluster` (a kind or a scheduler address), if given."""
    if cluster is None:
        return cfg
    kind = cluster if cluster in ("local", "slurm", "kubernetes") else "address"
    section = {"kind": kind, "address": cluster if kind == "address" else None}
    # the keys the config gave, so a SLURM key it left out still comes from jobqueue.yaml
    return cfg.model_copy(update={"cluster": cfg.cluster.model_validate({**cfg.cluster.model_dump(exclude_unset=True), **section})})


def check_inputs(cfg: Config, out: Path, years: list[int] | None = None) -> None:
    """The pre-flight alone: every input a run needs, resolved and checked (the scenes of `years`, default
    the config's, and of the store's unfinished years); nothing written."""
    from pipeline.preflight import check_settings, preflight
    from pipeline.run import ensure_study_area

    check_settings(cfg, out)
    if not ensure_study_area(cfg, console, generate=False):
        console.print(f"the embedded study area is not generated yet ({Path(cfg.path(cfg.synthetic.path))}): `glacierwatch "
                      "run` generates it first (~30 s), or `glacierwatch synth`; its inputs are checked once it exists")
        return
    inputs = preflight(cfg, out, years=years)
    for note in inputs.warnings:
        console.print(f"warning: {note}")
    for name, sensor in inputs.sensors.items():
        console.print(f"{name}: {sensor.profile.name} {sensor.source_url}, grid EPSG:{sensor.grid.epsg} "
                      f"{sensor.grid.shape[1]} x {sensor.grid.shape[0]} px, weights {sensor.weights.name} "
                      f"({sensor.card.architecture})")
    glaciers = "none" if inputs.inventory is None else f"{len(inputs.inventory)} glaciers"
    console.print(f"inventory: {inputs.inventory_path} ({glaciers}); DEM tiles: {len(inputs.dem_items)}; store: {inputs.store_url}")
    for name, by_year in inputs.scenes.items():
        console.print(f"{name} scenes: " + ", ".join(f"{year}: {len(items)}" for year, items in sorted(by_year.items())))
    console.print("pre-flight passed: `glacierwatch run` without --check starts the run")


def run_and_summarise(cfg: Config, out: Path, years: list[int] | None, redo: list[int] | None = None) -> None:
    """Run the study (all years, or `years` only; `redo`: stored years made again), then print its summary,
    stage times and warnings."""
    from pipeline.glaciers.summary import summary_table
    from pipeline.run import run_study

    result = run_study(cfg, out, years=years, console=console, redo=redo or ())
    summary = summary_table(result.tables)
    table = Table(title=f"{cfg.region.name}: glacier area, change and retreat")

    def fmt(row, key, spec, err=None):
        value = getattr(row, key, float("nan"))
        if pd.isna(value):
            return ""
        text = spec.format(value)
        error = getattr(row, err, float("nan")) if err else float("nan")
        return text if pd.isna(error) else f"{text} ± {abs(error):.2f}"

    columns = {
        "sensor": lambda r: r.sensor,
        "years": lambda r: r.years,
        "area first (km²)": lambda r: fmt(r, "area0_km2", "{:.2f}", "area0_err_km2"),
        "area last (km²)": lambda r: fmt(r, "area1_km2", "{:.2f}", "area1_err_km2"),
        "rate (%/a)": lambda r: fmt(r, "rate_pct_a", "{:+.2f}", "rate_err_pct_a"),
        "trend (km²/a)": lambda r: fmt(r, "trend_km2_a", "{:+.3f}"),
        "retreat (m/a)": lambda r: fmt(r, "mean_retreat_m_a", "{:.1f}"),
        "glaciers": lambda r: fmt(r, "n_glaciers", "{:.0f}"),
        "IoU": lambda r: fmt(r, "IoU", "{:.3f}"),
        "OA": lambda r: fmt(r, "OA", "{:.3f}"),
        "failed": lambda r: fmt(r, "n_failures", "{:.0f}"),  # glaciers with rows in tables/failures.csv
    }
    for name in columns:
        table.add_column(name, no_wrap=True)
    for row in summary.itertuples(index=False):
        table.add_row(*(cell(row) for cell in columns.values()))
    wide = Console(width=max(console.width, 150))
    wide.print(table)
    check = result.tables.get("generator_check")
    if check is not None and len(check):  # a synthetic area: the numbers against what the generator set
        against = Table(title="against the generator's parameters (truth/glaciers.parquet, truth/outlines.parquet)")
        for name in ("sensor", "check", "value", "target", "met"):
            against.add_column(name, no_wrap=True)
        against.add_column("detail")  # the years, the glaciers outside, the glaciers not measured
        for row in check.itertuples(index=False):
            # shares to one decimal: 89.7 % must not print as a "90" that failed ">= 90"
            against.add_row(row.sensor, row.check, f"{row.value:+.2f}" if "mean error" in row.check or "bias" in row.check
                            else f"{row.value:.1f}", row.target, "yes" if row.met else "no", row.detail)
        wide.print(against)
    stages = Table(title="time per stage")
    stages.add_column("stage")
    stages.add_column("s", justify="right")
    for name, seconds in result.timings.items():
        stages.add_row(name, f"{seconds:.1f}")
    stages.add_row("total", f"{sum(result.timings.values()):.1f}")
    console.print(stages)
    for row in summary.itertuples(index=False):  # never guess silently: name the glaciers the indices contradict
        if getattr(row, "n_index_flagged", 0) and not pd.isna(row.n_index_flagged):
            console.print(
                f"warning: {row.sensor}: in {_glacier_years(row.n_index_flagged)} the model mask disagrees with both NDSI > 0.4 "
                f"and red/SWIR > 2 (index_disagreement > analysis.max_index_disagreement): glaciers {row.index_flagged}; "
                "check them in the report (areas.flag_index_disagreement)", markup=False, highlight=False,
            )
    for row in summary.itertuples(index=False):  # cloud is not ice loss: say which glacier-years were not seen
        if getattr(row, "n_unobserved", 0) and not pd.isna(row.n_unobserved):
            console.print(
                f"warning: {row.sensor}: {_glacier_years(row.n_unobserved)} {'was' if int(row.n_unobserved) == 1 else 'were'} "
                "mostly unobserved (cloud or no scene over "
                f"more than analysis.max_unobserved of the outline): glaciers {row.unobserved}; their areas are lower bounds "
                "(areas.flag_unobserved), the region totals count them with their own observed years' area "
                "(total_area.filled_km2), and change and retreat leave them out", markup=False, highlight=False,
            )
    for row in summary.itertuples(index=False):  # fronts the run itself does not trust, named where they are read
        if getattr(row, "n_front_flagged", 0) and not pd.isna(row.n_front_flagged):
            console.print(
                f"warning: {row.sensor}: "
                + (f"the fronts of {int(row.n_front_flagged)} glaciers are" if int(row.n_front_flagged) != 1 else "the front of 1 glacier is")
                + f" flagged ({row.front_flagged}); "
                "their retreat stays in the tables and the mean above but not in the typical glaciers' summaries: "
                "check them in the report (retreat.flag_*)", markup=False, highlight=False,
            )
    from catalog.reads import REFUSED_SAYS

    for sensor, scenes in result.provenance.get("skipped_scenes", {}).items():
        if scenes:
            years = sorted({s.get("year") for s in scenes if s.get("year") is not None})
            console.print(
                f"warning: {len({s['item_id'] for s in scenes})} {sensor} scenes were skipped as unreadable (years {years}); those years have "
                "fewer observations and may under-map ice: see the scenes_skipped column of the areas tables and "
                "skipped_scenes in provenance.json (on_unreadable: fail in the config stops a run instead)"
                + ("; a year whose reads the storage refused is made again by the next run of this command"
                   if any(REFUSED_SAYS in s.get("reason", "") for s in scenes) else "")
            )
    console.print(f"outputs: {result.out}  (report: {result.out / 'report' / 'index.html'}, store: {result.store_url})")


def run(
    config: ConfigOption = None,
    out: OutOption = Path("glacierwatch-out"),
    cluster: ClusterOption = None,
    check: CheckOption = False,
) -> None:
    """The whole study: search, composites, inference into the store, statistics, report, STAC outputs."""
    require_model()
    cfg = with_cluster(load_config_or_exit(config), cluster)
    check_inputs(cfg, out) if check else run_and_summarise(cfg, out, None)


def update(
    year: Annotated[int, typer.Option(help="the new year to add to the store (with --redo: the stored year to make again)")],
    config: ConfigOption = None,
    out: OutOption = Path("glacierwatch-out"),
    cluster: ClusterOption = None,
    check: CheckOption = False,
    redo: Annotated[bool, typer.Option(
        "--redo", help="make the stored --year again from the scenes found now (scenes published late or reprocessed, "
        "a damaged chunk); other years untouched")] = False,
) -> None:
    """Annual update: add one year to the store (earlier years untouched), then recompute every table."""
    require_model()
    cfg = load_config_or_exit(config)
    try:
        cfg = cfg.model_copy(update={"years": cfg.years.model_validate({"start": cfg.years.start, "end": max(year, cfg.years.end)})})
    except ValidationError as err:
        fail(f"--year {year}: {err.errors()[0]['msg'].removeprefix('Value error, ')}")
    cfg = with_cluster(cfg, cluster)
    require_store(cfg, out, year, redo=redo)
    check_inputs(cfg, out, [year]) if check else run_and_summarise(cfg, out, [year], redo=[year] if redo else None)


def require_store(cfg: Config, out: Path, year: int, *, redo: bool = False) -> None:
    """An update adds a year to a store `run` made: without one it made a store of that year alone, and
    tables of it, under a schedule that had lost its --out or its config's `store:`. A year before the
    store's last cannot be added (it would be inserted before later years): said before any search."""
    from pipeline.preflight import store_url_for
    from pipeline.store import RegionStore

    url = store_url_for(cfg, out.resolve())
    store = RegionStore(url)
    if not store.exists():
        fail(f"no store at {url}: `glacierwatch update` adds a year to the store a `glacierwatch run` made; give that "
             "run's --out (or set store: in the config), or make the store with `glacierwatch run` first")
    stored = {s: store.years(s) for s in cfg.sensors if s in store.sensors()}
    later = {s: max(y) for s, y in stored.items() if y and year < max(y) and year not in y}
    if later and redo:
        fail(f"--redo {year}: {', '.join(sorted(later))} holds later years but not {year}, and a year cannot be inserted "
             "before later ones; a redo makes the year for every configured sensor: take the sensors without it out of "
             "a copy of the config for this --out's store (their tables are then not made), or start a new store")
    if later:
        fail(f"--year {year}: the store at {url} holds years up to {max(later.values())}; a year can only be added after "
             "the last (inserting one rewrites every later year): start a new store (store: ...) for a series with it")
    gaps = sorted({g for y in stored.values() if y and year > max(y) + 1 for g in range(max(y) + 1, year)})
    if gaps:
        console.print(f"note: the store's last year is {gaps[0] - 1}: {', '.join(map(str, gaps))} will be missing from the series "
                      f"for good (a year can only be added after the last); add {gaps[0]} first to keep them",
                      markup=False, highlight=False)
    if redo and not any(year in y for y in stored.values()):
        fail(f"--redo: {year} is not in the store at {url}, so there is nothing to make again: drop --redo to add it")
    if stored and all(year in y for y in stored.values()) and not redo:
        console.print(f"note: {year} is already in the store: only what is unfinished is inferred; the tables are made "
                      "again (--redo makes the year again from the scenes found now)", markup=False, highlight=False)


def plan(
    config: ConfigOption = None,
    offline: Annotated[bool, typer.Option("--offline", help="no network: estimate scenes from the revisit")] = False,
    workers: Annotated[Optional[int], typer.Option(help="override cluster.workers")] = None,
    rates: Annotated[Optional[Path], typer.Option(help="rates YAML (default: the shipped, measured one)")] = None,
) -> None:
    """The work of a run before running it: grid, tiles, scenes, bytes, pixels, hours. Reads no pixels."""
    from catalog.tiling import TilingError
    from pipeline.scale.plan import Rates, plan_run, render_plan

    cfg = load_config_or_exit(config)
    try:
        work = plan_run(cfg, rates=Rates.load(rates) if rates else None, cluster_workers=workers, offline=offline)
    except (TilingError, ValueError, FileNotFoundError) as err:
        fail(str(err))
    render_plan(work, Console(width=max(console.width, 150)))
