"""`glacierwatch`: the command line. Configuration enters here and leaves as typed objects."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from catalog.providers import get_profile
from catalog.scenes import check_region_covered, find_scenes
from catalog.search import SearchError, open_source
from catalog.synthetic import generate_study_area
from pipeline.config import Config, ConfigError, load_config

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Annual glacier maps from Sentinel-2 and Landsat, and the numbers glaciologists publish.",
)
console = Console()
errors = Console(stderr=True)

ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="YAML config; default: the embedded study area")
]


def _fail(message: str) -> None:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _config(path: Path | None, **overrides) -> Config:
    try:
        return load_config(path, **overrides)
    except ConfigError as err:
        _fail(str(err))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


@app.command()
def synth(
    config: ConfigOption = None,
    out: Annotated[Optional[Path], typer.Option(help="output folder; default: synthetic.path")] = None,
    size: Annotated[Optional[float], typer.Option(help="x area of the default study area (4 = twice each side)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed")] = None,
) -> None:
    """Write the embedded synthetic study area: COGs, STAC catalog, DEM, inventory and truth."""
    cfg = _config(config)
    synthetic = cfg.synthetic.model_copy(update={k: v for k, v in (("size", size), ("seed", seed)) if v is not None})
    try:
        spec = synthetic.spec()
    except ValueError as err:
        _fail(str(err))
    target = out or Path(cfg.path(synthetic.path))
    with _progress() as progress:
        task = progress.add_task("rendering scenes", total=None)
        try:
            area = generate_study_area(target, spec, on_progress=lambda done, n: progress.update(task, completed=done, total=n))
        except FileExistsError as err:
            _fail(str(err))
    console.print(
        f"study area: {area.n_glaciers} glaciers, items {area.n_items} -> {area.catalog}\n"
        f"region.bbox for a config: {list(spec.bbox())}"
    )


@app.command()
def search(
    config: ConfigOption = None,
    sensor: Annotated[Optional[list[str]], typer.Option(help="sentinel-2 and/or landsat; default: all configured")] = None,
    year: Annotated[Optional[list[int]], typer.Option(help="years; default: all configured")] = None,
) -> None:
    """List the scenes each configured sensor has over the region, per year of the season."""
    cfg = _config(config)
    sensors = sensor or list(cfg.sensors)
    unknown = [s for s in sensors if s not in cfg.sensors]
    if unknown:
        _fail(f"--sensor {', '.join(unknown)} is not configured: use one of {', '.join(cfg.sensors)}")
    years = year or list(cfg.years)
    table = Table(title=f"Scenes over {cfg.region.name} ({cfg.season.start}..{cfg.season.end})")
    for column in ("sensor", "year", "scene", "datetime", "cloud %", "crs", "platform"):
        table.add_column(column, no_wrap=True)
    try:
        for name in sensors:
            sensor_cfg = cfg.sensors[name]
            profile = get_profile(sensor_cfg.provider)
            source = open_source(cfg.source_url(sensor_cfg), profile.signer())
            check_region_covered(source, profile.collection(name), cfg.region.bbox)
            for y in years:
                items = find_scenes(source, profile, name, cfg.region.bbox, y, cfg.season.as_tuple(), sensor_cfg.max_cloud)
                for item in items:
                    table.add_row(
                        name,
                        str(y),
                        item.id,
                        item.datetime.strftime("%Y-%m-%d %H:%M"),
                        f"{item.properties.get('eo:cloud_cover', float('nan')):.1f}",
                        str(item.properties.get("proj:code") or f"EPSG:{item.properties.get('proj:epsg')}"),
                        str(item.properties.get("platform", "")),
                    )
    except SearchError as err:
        _fail(str(err))
    Console(width=max(console.width, 140)).print(table)


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Print the effective configuration (defaults filled in) as YAML: a starting point for your own."""
    cfg = _config(config)
    sys.stdout.write(cfg.to_yaml())


@app.command()
def stats(
    outlines: Annotated[Path, typer.Option(help="outlines: any vector file (GeoPackage, shapefile, GeoParquet)")],
    out: Annotated[Path, typer.Option(help="folder for the tables (Parquet and CSV)")],
    dem: Annotated[Optional[Path], typer.Option(help="DEM GeoTIFF covering the outlines (any CRS)")] = None,
    id_field: Annotated[str, typer.Option(help="glacier id field")] = "glacier_id",
    date_field: Annotated[Optional[str], typer.Option(help="date field, for change and terminus retreat")] = None,
    pixel_size: Annotated[float, typer.Option(help="pixel size (m) behind the outlines, for uncertainty")] = 10.0,
    band: Annotated[float, typer.Option(help="elevation band width (m) for hypsometry")] = 100.0,
) -> None:
    """Glacier statistics on outlines from anywhere (GLIMS, RGI, hand-digitised)."""
    from pipeline.outline_stats import outline_statistics, write_tables

    try:
        tables = outline_statistics(
            outlines, dem_path=dem, id_field=id_field, date_field=date_field, pixel_size_m=pixel_size, band_m=band
        )
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    write_tables(tables, out)
    for name, table in tables.items():
        console.print(f"{name}: {len(table)} rows -> {out / name}.parquet")


@app.command()
def train(
    config: ConfigOption = None,
    sensor: Annotated[str, typer.Option(help="sentinel-2 or landsat")] = "sentinel-2",
    out: Annotated[Path, typer.Option(help="folder for checkpoints, logs, the final weights and accuracy")] = Path(
        "glacierwatch-out/training"
    ),
    architecture: Annotated[Optional[str], typer.Option(help="dunet or unet; default: training.architecture")] = None,
    base: Annotated[Optional[int], typer.Option(help="first-level width; default: training.base")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="maximum epochs; default: training.epochs")] = None,
    variants: Annotated[Optional[int], typer.Option(help="augmented copies per crop; default: training.variants")] = None,
) -> None:
    """Train the glacier network on the configured region's composites, then score it on held-out years."""
    cfg = _config(config)
    if sensor not in cfg.sensors:
        _fail(f"--sensor {sensor} is not configured: use one of {', '.join(cfg.sensors)}")
    overrides = {k: v for k, v in (("architecture", architecture), ("base", base), ("epochs", epochs), ("variants", variants)) if v is not None}
    try:
        options = cfg.training.model_validate({**cfg.training.model_dump(), **overrides})
    except ValueError as err:
        _fail(f"training option: {err}")
    from pipeline.training_run import train_and_evaluate

    try:
        result = train_and_evaluate(cfg, sensor, options, out / sensor, console=console)
    except (SearchError, ValueError, FileNotFoundError) as err:
        _fail(str(err))
    table = Table(title=f"Accuracy on held-out years {list(options.test_years)} ({sensor})")
    for column in ("model", "zone", "year", "PA", "UA", "OA", "F1", "IoU"):
        table.add_column(column)
    for row in result.accuracy.itertuples():
        table.add_row(row.model, row.zone, str(row.year), *(f"{getattr(row, m):.3f}" for m in ("PA", "UA", "OA", "F1", "IoU")))
    console.print(table)
    console.print(f"weights: {result.weights}  (card: {result.weights.with_suffix('.json')})")


OutOption = Annotated[Path, typer.Option("--out", "-o", help="folder for the store, tables, outlines, report and STAC catalog")]
ClusterOption = Annotated[
    Optional[str], typer.Option(help="local | slurm | kubernetes | a scheduler address (tcp://...); default: cluster in the config")
]


def _with_cluster(cfg: Config, cluster: str | None) -> Config:
    if cluster is None:
        return cfg
    kind = cluster if cluster in ("local", "slurm", "kubernetes") else "address"
    section = {"kind": kind, "address": cluster if kind == "address" else None}
    return cfg.model_copy(update={"cluster": cfg.cluster.model_validate({**cfg.cluster.model_dump(), **section})})


def _run(cfg: Config, out: Path, years: list[int] | None) -> None:
    from catalog.cube import SceneReadError
    from catalog.tiling import TilingError
    from catalog.items import ItemError
    from pipeline.cluster import ClusterError
    from pipeline.lock import StoreLockedError
    from pipeline.statistics import InventoryError
    from pipeline.model.weights import WeightsError
    from pipeline.run import RunError, run_study, summary_table
    from pipeline.store import StoreError

    try:
        result = run_study(cfg, out, years=years, console=console)
    except (
        SearchError, RunError, StoreError, StoreLockedError, WeightsError, ClusterError, FileExistsError,
        InventoryError, SceneReadError, ItemError, TilingError,
    ) as err:
        _fail(str(err))
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
    }
    for name in columns:
        table.add_column(name, no_wrap=True)
    for row in summary.itertuples(index=False):
        table.add_row(*(cell(row) for cell in columns.values()))
    wide = Console(width=max(console.width, 150))
    wide.print(table)
    stages = Table(title="time per stage")
    stages.add_column("stage")
    stages.add_column("s", justify="right")
    for name, seconds in result.timings.items():
        stages.add_row(name, f"{seconds:.1f}")
    stages.add_row("total", f"{sum(result.timings.values()):.1f}")
    console.print(stages)
    console.print(f"outputs: {result.out}  (report: {result.out / 'report' / 'index.html'}, store: {result.store_url})")


@app.command()
def run(
    config: ConfigOption = None,
    out: OutOption = Path("glacierwatch-out"),
    cluster: ClusterOption = None,
) -> None:
    """The whole study: search, composites, inference into the store, statistics, report, STAC outputs."""
    _run(_with_cluster(_config(config), cluster), out, None)


@app.command()
def update(
    year: Annotated[int, typer.Option(help="the new year to add to the store")],
    config: ConfigOption = None,
    out: OutOption = Path("glacierwatch-out"),
    cluster: ClusterOption = None,
) -> None:
    """Annual update: add one year to the store (earlier years untouched), then recompute every table."""
    cfg = _config(config)
    try:
        cfg = cfg.model_copy(update={"years": cfg.years.model_validate({"start": cfg.years.start, "end": max(year, cfg.years.end)})})
    except ValueError as err:
        _fail(f"--year {year}: {err}")
    _run(_with_cluster(cfg, cluster), out, [year])


@app.command()
def plan(
    config: ConfigOption = None,
    offline: Annotated[bool, typer.Option("--offline", help="no network: estimate scenes from the revisit")] = False,
    workers: Annotated[Optional[int], typer.Option(help="override cluster.workers")] = None,
    rates: Annotated[Optional[Path], typer.Option(help="rates YAML (default: the shipped, measured one)")] = None,
) -> None:
    """The work of a run before running it: grid, tiles, scenes, bytes, pixels, hours. Reads no pixels."""
    from catalog.tiling import TilingError
    from pipeline.plan import Rates, plan_run, render_plan

    cfg = _config(config)
    try:
        work = plan_run(cfg, rates=Rates.load(rates) if rates else None, cluster_workers=workers, offline=offline)
    except (TilingError, ValueError, FileNotFoundError) as err:
        _fail(str(err))
    render_plan(work, Console(width=max(console.width, 150)))


if __name__ == "__main__":
    app()
