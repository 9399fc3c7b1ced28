"""`glacierwatch`: the command line. Configuration enters here and leaves as typed objects.

This package owns the one `app` (the `glacierwatch` script and `python -m pipeline.cli`), its global
`--debug` option, and the data commands (`synth`, `search`, `config`, `stats`); the model commands
live in `pipeline.cli.model_commands`, the run commands in `pipeline.cli.run_commands`, and are registered here in
the order `--help` lists them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from catalog.providers import get_profile
from catalog.redact import RedactingConsole as Console  # every output redacted, no markup read
from catalog.scenes import check_region_covered, find_scenes
from catalog.search import open_source
from pipeline.cli import model_commands, run_commands
from pipeline.cli.console import console, progress_bar
from pipeline.cli.console import errors as error_console
from pipeline.cli.errors import OneLineErrors, fail, set_debug
from pipeline.cli.options import ConfigOption, load_config_or_exit

app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    help="Annual glacier maps from Sentinel-2 and Landsat, and the numbers glaciologists publish.",
)


@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="show the full traceback of an error")] = False,
) -> None:
    """Annual glacier maps from Sentinel-2 and Landsat, and the numbers glaciologists publish."""
    set_debug(ctx, debug)


@app.command()
def synth(
    config: ConfigOption = None,
    out: Annotated[Optional[Path], typer.Option(help="output folder; default: synthetic.path")] = None,
    size: Annotated[Optional[float], typer.Option(help="x area of the default study area (4 = twice each side)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed")] = None,
    massif_share: Annotated[Optional[float], typer.Option(help="share of the ~5 km cells holding a massif (0.1: a sparse region)")] = None,
) -> None:
    """Write the embedded synthetic study area: COGs, STAC catalog, DEM, inventory and truth."""
    from catalog.synthetic import generate_study_area  # the renderer: only this command needs it

    cfg = load_config_or_exit(config)
    synthetic = cfg.synthetic.model_copy(update={k: v for k, v in (("size", size), ("seed", seed), ("massif_share", massif_share))
                                            if v is not None})
    try:
        spec = synthetic.spec()
    except ValueError as err:
        fail(str(err))
    target = out or Path(cfg.path(synthetic.path))
    with progress_bar() as progress:
        task = progress.add_task("rendering scenes", total=None)
        try:
            area = generate_study_area(target, spec, on_progress=lambda done, n: progress.update(task, completed=done, total=n))
        except FileExistsError as err:
            fail(str(err))
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
    cfg = load_config_or_exit(config)
    sensors = sensor or list(cfg.sensors)
    unknown = [s for s in sensors if s not in cfg.sensors]
    if unknown:
        fail(f"--sensor {', '.join(unknown)} is not configured: use one of {', '.join(cfg.sensors)}")
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
def showload_config_or_exit(config: ConfigOption = None) -> None:
    """Print the effective configuration (defaults filled in) as YAML: a starting point for your own."""
    cfg = load_config_or_exit(config)
    sys.stdout.write(cfg.to_yaml(as_template=True))


@app.command()
def stats(
    outlines: Annotated[Path, typer.Option(help="outlines: any vector file (GeoPackage, shapefile, GeoParquet)")],
    out: Annotated[Path, typer.Option(help="folder for the tables (Parquet and CSV)")],
    dem: Annotated[Optional[Path], typer.Option(help="DEM GeoTIFF covering the outlines (any CRS)")] = None,
    id_field: Annotated[str, typer.Option(help="glacier id field")] = "glacier_id",
    date_field: Annotated[Optional[str], typer.Option(help="date field, for change and terminus retreat")] = None,
    pixel_size: Annotated[float, typer.Option(help="pixel size (m) behind the outlines, for uncertainty")] = 10.0,
    band: Annotated[float, typer.Option(help="elevation band width (m) for hypsometry")] = 100.0,
    terminus_lines: Annotated[str, typer.Option(
        help="centre: the main-axis line and its two neighbours (length change) | front: every line that cuts "
        "both fronts (the paper's average)")] = "centre",
    terminus_statistic: Annotated[str, typer.Option(help="mean | median over those lines")] = "mean",
) -> None:
    """Glacier statistics on outlines from anywhere (GLIMS, RGI, hand-digitised)."""
    import contextlib
    import warnings

    from pydantic import ValidationError

    from pipeline.config import Analysis
    from pipeline.glaciers.outline_inputs import OutlineWarning
    from pipeline.glaciers.outline_stats import outline_statistics, write_tables

    try:
        analysis = Analysis(min_mapping_unit_km2=0.0, terminus_lines=terminus_lines, terminus_statistic=terminus_statistic)
    except ValidationError as err:
        fail(f"--terminus-lines must be centre or front and --terminus-statistic mean or median "
             f"({err.error_count()} invalid); got {terminus_lines!r}, {terminus_statistic!r}")
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.ExitStack() as shown:
            warnings.simplefilter("always", OutlineWarning)
            progress = progress_bar()
            stages: dict[str, int] = {}  # stage -> its bar; the bars shown from the first (none: no empty line)

            def show(stage: str, done: int, total: int) -> None:
                if not stages:
                    shown.enter_context(progress)
                if stage not in stages:
                    stages[stage] = progress.add_task(stage, total=total)
                progress.update(stages[stage], completed=done, total=total)

            tables = outline_statistics(
                outlines, dem_path=dem, id_field=id_field, date_field=date_field, pixel_size_m=pixel_size, band_m=band,
                analysis=analysis, on_progress=show,
            )
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    for w in caught:  # the outlines' own warnings as one line each; any other as Python shows it
        if issubclass(w.category, OutlineWarning):
            error_console.print(f"warning: {w.message}", soft_wrap=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    write_tables(tables, out)
    for name, table in tables.items():
        console.print(f"{name}: {len(table)} rows -> {out / name}.parquet")


app.command()(model_commands.predict)
app.command()(model_commands.train)
app.command("train-world")(model_commands.train_world)
app.command()(run_commands.run)
app.command()(run_commands.update)
app.command()(run_commands.plan)



if __name__ == "__main__":
    app()
