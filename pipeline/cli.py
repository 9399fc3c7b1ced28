"""`glacierwatch`: the command line. Configuration enters here and leaves as typed objects."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import pandas as pd
import typer
import typer.core
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from catalog.providers import get_profile
from catalog.redact import RedactingConsole as Console  # every output redacted, no markup read
from catalog.scenes import check_region_covered, find_scenes
from catalog.search import open_source
from catalog.synthetic import generate_study_area
from pipeline.config import Config, ConfigError, load_config
from pipeline.model import MODEL_EXTRA_HINT, missing_model_extra, require_model

class _OneLineErrors(typer.core.TyperGroup):
    """Every command's errors end here: one line per problem, exit 2; `--debug` shows the traceback.

    The library errors a user can meet (bad files, unreachable catalogs, cluster start-up, the
    pre-flight's problems) are input errors; anything else is a bug, said in one line as well,
    with the hint to rerun with --debug and report it.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException, click.exceptions.Exit):
            raise
        except Exception as err:  # noqa: BLE001 - the one place exceptions become messages
            if _DEBUG.get(ctx, False) or "--debug" in sys.argv:
                errors.print_exception()  # through the redacting console: no secret in a traceback either
            if missing_model_extra(err):  # torch (the `model` extra) not installed: the install line, nothing else
                _fail(MODEL_EXTRA_HINT)
            _report(err)
            raise typer.Exit(code=2 if _is_input_error(err) else 1) from None


_DEBUG: dict = {}


def _is_input_error(err: BaseException) -> bool:
    import rasterio
    import yaml

    known: tuple[type[BaseException], ...] = (ValueError, OSError, LookupError, RuntimeError, yaml.YAMLError,
                                              rasterio.errors.RasterioError)
    return isinstance(err, known)


def _report(err: BaseException) -> None:
    # Only a run's pre-flight raises PreflightError; importing it here would need torch (stats, plan must not).
    preflight = sys.modules.get("pipeline.preflight")
    raised_by_preflight = preflight is not None and isinstance(err, preflight.PreflightError)
    lines = err.problems if raised_by_preflight else [str(err).strip() or type(err).__name__]
    if not _is_input_error(err):
        lines = [f"internal error ({type(err).__name__}: {lines[0]}); rerun with --debug for the traceback and report it"]
    elif type(err).__module__.split(".")[0] not in ("catalog", "pipeline"):
        lines = [f"{type(err).__name__}: {line}" for line in lines]  # a library's error: say which kind
    for line in lines:
        errors.print(f"[bold red]error:[/] {escape(' '.join(line.split()))}", markup=True, highlight=False, soft_wrap=True)


app = typer.Typer(
    cls=_OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    help="Annual glacier maps from Sentinel-2 and Landsat, and the numbers glaciologists publish.",
)
console = Console()
errors = Console(stderr=True)

@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="show the full traceback of an error")] = False,
) -> None:
    """Annual glacier maps from Sentinel-2 and Landsat, and the numbers glaciologists publish."""
    _DEBUG[ctx.find_root()] = debug


ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="YAML config; default: the embedded study area")
]


def _fail(message: str) -> None:
    errors.print(f"[bold red]error:[/] {escape(str(message))}", markup=True, highlight=False, soft_wrap=True)
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
def predict(
    sensor: Annotated[str, typer.Option(help="sentinel-2 or landsat")],
    bands: Annotated[str, typer.Option(help="six single-band GeoTIFFs, comma-separated: blue,green,red,nir,swir16,swir22; the first sets the output grid")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output COG: uint8 glacier probability x 255 (0-254), 255 = no data")],
    scale: Annotated[float, typer.Option(help="reflectance = DN x scale + offset")] = 1e-4,
    offset: Annotated[float, typer.Option(help="reflectance offset (Sentinel-2 baseline 04.00+: -0.1; Landsat C2 L2: -0.2 with --scale 2.75e-5)")] = 0.0,
    dem: Annotated[Optional[Path], typer.Option(help="DEM GeoTIFF, any CRS and resolution (needed by weights that use terrain)")] = None,
    classifier: Annotated[str, typer.Option(help="network (the shipped or --weights network) | dunet | unet | band-ratio | ndsi")] = "network",
    weights: Annotated[Optional[Path], typer.Option(help=".safetensors weights with their .json card; default for dunet: the shipped ones")] = None,
) -> None:
    """Glacier probability for one scene already on disk (six band files), as a Cloud-Optimized GeoTIFF."""
    require_model()
    from pipeline.predict import predict_scene

    def warn(message: str) -> None:
        errors.print(f"[yellow]warning:[/] {escape(' '.join(message.split()))}", markup=True, highlight=False, soft_wrap=True)

    paths = [Path(b.strip()) for b in bands.split(",") if b.strip()]
    result = predict_scene(paths, sensor, out, scale=scale, offset=offset, dem=dem, classifier=classifier,
                           weights=weights, warn=warn)
    height, width = result.shape
    console.print(f"{result.out}: {width} x {height} px at {result.resolution[0]:g} m ({result.crs}), {result.classifier}: "
                  f"{result.glacier_fraction:.1%} of {result.n_valid} valid px glacier (p >= 0.5)", soft_wrap=True)


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
    require_model()
    cfg = _config(config)
    if sensor not in cfg.sensors:
        _fail(f"--sensor {sensor} is not configured: use one of {', '.join(cfg.sensors)}")
    overrides = {k: v for k, v in (("architecture", architecture), ("base", base), ("epochs", epochs), ("variants", variants)) if v is not None}
    try:
        options = cfg.training.model_validate({**cfg.training.model_dump(), **overrides})
    except ValueError as err:
        _fail(f"training option: {err}")
    from pipeline.training_run import train_and_evaluate

    result = train_and_evaluate(cfg, sensor, options, out / sensor, console=console)
    table = Table(title=f"Accuracy on held-out years {list(options.test_years)} ({sensor})")
    for column in ("model", "zone", "year", "PA", "UA", "OA", "F1", "IoU"):
        table.add_column(column)
    for row in result.accuracy.itertuples():
        table.add_row(row.model, row.zone, str(row.year), *(f"{getattr(row, m):.3f}" for m in ("PA", "UA", "OA", "F1", "IoU")))
    console.print(table)
    console.print(f"weights: {result.weights}  (card: {result.weights.with_suffix('.json')})")


@app.command("train-world")
def train_world(
    sensor: Annotated[str, typer.Option(help="sentinel-2 or landsat")] = "sentinel-2",
    out: Annotated[Path, typer.Option(help="folder for checkpoints, logs, the weights, accuracy.csv and area_bias.csv")] = Path(
        "glacierwatch-out/training-world"
    ),
    architecture: Annotated[str, typer.Option(help="dunet-deep, dunet (every stage deformable), dunet-shallow or unet")] = "dunet-deep",
    compare: Annotated[Optional[list[str]], typer.Option(help="other architectures trained alike and scored beside it")] = None,
    scenes: Annotated[int, typer.Option(help="training scenes drawn from the world")] = 48,
    valid_scenes: Annotated[int, typer.Option(help="validation scenes (calibration)")] = 24,
    test_scenes: Annotated[int, typer.Option(help="held-out test scenes (the accuracy table)")] = 16,
    size: Annotated[int, typer.Option(help="scene side in sensor pixels")] = 256,
    base: Annotated[int, typer.Option(help="first-level width")] = 16,
    epochs: Annotated[int, typer.Option(help="epochs")] = 10,
    seed: Annotated[int, typer.Option(help="training seed")] = 0,
    terrain: Annotated[str, typer.Option(help="terrain channels, comma-separated (slope, relative_elevation), or 'none'")] = "slope,relative_elevation",
    resume: Annotated[bool, typer.Option("--resume", help="load networks whose last checkpoint is already in --out")] = False,
    with_area: Annotated[bool, typer.Option("--with-area", help="mix in the embedded area's training years (config -c)")] = False,
    config: ConfigOption = None,
) -> None:
    """Train on the Earth-like training world and score on held-out scenes (other seeds, terrain, glaciers)."""
    require_model()
    from pipeline.training import TrainingConfig
    from pipeline.world_training import train_on_world

    if sensor not in ("sentinel-2", "landsat"):
        _fail(f"--sensor {sensor}: use sentinel-2 or landsat")
    try:
        configs = [
            TrainingConfig(architecture=a, base=base, crop_size=128, variants=1, focal_alpha=0.5, max_epochs=epochs,
                           lr_decay=0.9, test_fraction=0.0, loss_threshold=0.0, seed=seed)
            for a in (architecture, *(compare or ()))
        ]
    except ValueError as err:
        _fail(f"training option: {err}")
    area = None
    if with_area:
        from pipeline.run import ensure_study_area

        area = _config(config)
        ensure_study_area(area, console)
    channels = () if terrain.strip() in ("", "none") else tuple(t.strip() for t in terrain.split(","))
    if "elevation" in channels:
        _fail("--terrain elevation: absolute elevation ties the network to the training elevations; use relative_elevation")
    result = train_on_world(sensor, out / sensor, n_train=scenes, n_valid=valid_scenes, n_test=test_scenes, size=size, config=configs[0], compare=configs[1:],
                            terrain=channels, resume=resume, area=area, console=console)
    table = Table(title=f"Accuracy on held-out world scenes ({sensor})")
    for column in ("model", "zone", "PA", "UA", "F1", "IoU"):
        table.add_column(column)
    for row in result.accuracy.itertuples():
        table.add_row(row.model, row.zone, *(f"{getattr(row, m):.3f}" for m in ("PA", "UA", "F1", "IoU")))
    console.print(table)
    console.print(f"weights: {result.weights}  ({result.seconds / 60:.1f} min)")


OutOption = Annotated[Path, typer.Option("--out", "-o", help="folder for the store, tables, outlines, report and STAC catalog")]
CheckOption = Annotated[
    bool, typer.Option("--check", help="only the pre-flight: check every input (offline first), write nothing")
]
ClusterOption = Annotated[
    Optional[str], typer.Option(help="local | slurm | kubernetes | a scheduler address (tcp://...); default: cluster in the config")
]


def _with_cluster(cfg: Config, cluster: str | None) -> Config:
    if cluster is None:
        return cfg
    kind = cluster if cluster in ("local", "slurm", "kubernetes") else "address"
    section = {"kind": kind, "address": cluster if kind == "address" else None}
    return cfg.model_copy(update={"cluster": cfg.cluster.model_validate({**cfg.cluster.model_dump(), **section})})


def _check(cfg: Config, out: Path) -> None:
    """The pre-flight alone: every input a run needs, resolved and checked; nothing written."""
    from pipeline.preflight import check_settings, preflight
    from pipeline.run import ensure_study_area

    check_settings(cfg, out)
    ensure_study_area(cfg, console)
    inputs = preflight(cfg, out)
    for note in inputs.warnings:
        console.print(f"warning: {note}")
    for name, sensor in inputs.sensors.items():
        console.print(f"{name}: {sensor.profile.name} {sensor.source_url}, grid EPSG:{sensor.grid.epsg} "
                      f"{sensor.grid.shape[1]} x {sensor.grid.shape[0]} px, weights {sensor.weights.name} "
                      f"({sensor.card.architecture})")
    glaciers = "none" if inputs.inventory is None else f"{len(inputs.inventory)} glaciers"
    console.print(f"inventory: {inputs.inventory_path} ({glaciers}); DEM tiles: {len(inputs.dem_items)}; store: {inputs.store_url}")
    console.print("pre-flight passed: `glacierwatch run` without --check starts the run")


def _run(cfg: Config, out: Path, years: list[int] | None) -> None:
    from pipeline.run import run_study, summary_table

    result = run_study(cfg, out, years=years, console=console)
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
        "failed": lambda r: fmt(r, "n_failures", "{:.0f}"),  # glaciers in tables/failures.csv
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
    for row in summary.itertuples(index=False):  # never guess silently: name the glaciers the indices contradict
        if getattr(row, "n_index_flagged", 0) and not pd.isna(row.n_index_flagged):
            console.print(
                f"warning: {row.sensor}: in {int(row.n_index_flagged)} glacier-years the model mask disagrees with both NDSI > 0.4 "
                f"and red/SWIR > 2 (index_disagreement > analysis.max_index_disagreement): glaciers {row.index_flagged}; "
                "check them in the report (areas.flag_index_disagreement)", markup=False, highlight=False,
            )
    for sensor, scenes in result.provenance.get("skipped_scenes", {}).items():
        if scenes:
            years = sorted({s.get("year") for s in scenes if s.get("year") is not None})
            console.print(
                f"warning: {len({s['item_id'] for s in scenes})} {sensor} scenes were skipped as unreadable (years {years}); those years have "
                "fewer observations and may under-map ice: see the scenes_skipped column of the areas tables and "
                "skipped_scenes in provenance.json (on_unreadable: fail in the config stops a run instead)"
            )
    console.print(f"outputs: {result.out}  (report: {result.out / 'report' / 'index.html'}, store: {result.store_url})")


@app.command()
def run(
    config: ConfigOption = None,
    out: OutOption = Path("glacierwatch-out"),
    cluster: ClusterOption = None,
    check: CheckOption = False,
) -> None:
    """The whole study: search, composites, inference into the store, statistics, report, STAC outputs."""
    require_model()
    cfg = _with_cluster(_config(config), cluster)
    _check(cfg, out) if check else _run(cfg, out, None)


@app.command()
def update(
    year: Annotated[int, typer.Option(help="the new year to add to the store")],
    config: ConfigOption = None,
    out: OutOption = Path("glacierwatch-out"),
    cluster: ClusterOption = None,
    check: CheckOption = False,
) -> None:
    """Annual update: add one year to the store (earlier years untouched), then recompute every table."""
    require_model()
    cfg = _config(config)
    try:
        cfg = cfg.model_copy(update={"years": cfg.years.model_validate({"start": cfg.years.start, "end": max(year, cfg.years.end)})})
    except ValueError as err:
        _fail(f"--year {year}: {err}")
    cfg = _with_cluster(cfg, cluster)
    _check(cfg, out) if check else _run(cfg, out, [year])


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
