"""The model commands: `predict` one scene on disk, `train` on the configured region, `train-world` on the training world.

Each needs the `model` extra (torch), asked for by `require_model` before anything heavy is imported,
so the rest of the command line runs without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from pipeline.cli.console import console, errors
from pipeline.cli.errors import fail
from pipeline.cli.options import ConfigOption, load_config_or_exit
from pipeline.model import require_model


def predict(
    sensor: Annotated[str, typer.Option(help="sentinel-2 or landsat")],
    bands: Annotated[str, typer.Option(help="six single-band GeoTIFFs, comma-separated: blue,green,red,nir,swir16,swir22; the first sets the output grid")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output COG: uint8 glacier probability x 255 (0-254), 255 = no data")],
    scale: Annotated[float, typer.Option(help="reflectance = DN x scale + offset")] = 1e-4,
    offset: Annotated[float, typer.Option(help="reflectance offset (Sentinel-2 baseline 04.00+: -0.1; Landsat C2 L2: -0.2 with --scale 2.75e-5)")] = 0.0,
    dem: Annotated[Optional[Path], typer.Option(help="DEM GeoTIFF, any CRS and resolution (needed by weights that use terrain)")] = None,
    quality: Annotated[Optional[Path], typer.Option(help="the scene's SCL (Sentinel-2) or QA_PIXEL (Landsat): cloud, shadow, "
                                                     "cirrus, saturated and fill pixels become no data")] = None,
    classifier: Annotated[str, typer.Option(help="network (the shipped or --weights network) | dunet | unet | band-ratio | ndsi")] = "network",
    weights: Annotated[Optional[Path], typer.Option(help=".safetensors weights with their .json card; default: the shipped ones for --sensor "
                                                              "(U-Nets: --classifier dunet needs D-UNet weights)")] = None,
    half: Annotated[Optional[bool], typer.Option("--half/--fp32", help="half precision: fp16 on a GPU, bf16 on a CPU with bf16 instructions "
                                                  "(~2x there; fp32 on CPUs without); default: on GPUs only")] = None,
) -> None:
    """Glacier probability for one scene already on disk (six band files), as a Cloud-Optimized GeoTIFF."""
    require_model()
    from pipeline.inference.predict import predict_scene

    def warn(message: str) -> None:
        errors.print(f"[yellow]warning:[/] {escape(' '.join(message.split()))}", markup=True, highlight=False, soft_wrap=True)

    paths = [Path(b.strip()) for b in bands.split(",") if b.strip()]
    result = predict_scene(paths, sensor, out, scale=scale, offset=offset, dem=dem, classifier=classifier,
                           weights=weights, half=half, warn=warn, quality=quality)
    height, width = result.shape
    console.print(f"{result.out}: {width} x {height} px at {result.resolution[0]:g} m ({result.crs}), {result.classifier}: "
                  f"{result.glacier_fraction:.1%} of {result.n_valid} valid px glacier (p >= 0.5)"
                  + (f"; of the {result.n_index_ice} px NDSI and red/SWIR both call snow or ice, {result.index_recall:.0%} mapped"
                     if result.n_index_ice else "")
                  + ("; a scene of the other hemisphere than the network's training: fed to it mirrored north-south"
                     if result.mirrored_north_south else ""), soft_wrap=True)


def require_new_training_folder(folder: Path, command: str) -> None:
    """A training writes its weights, card and checkpoints into `folder`: one that holds files (or is a file) is
    refused before any composite or scene. Trained again into it, the weights a store had been made with were
    replaced without a word and the last run's later checkpoints lay beside the new log (a helper's audit)."""
    if folder.exists() and not folder.is_dir():
        fail(f"--out: {folder} is a file: give a folder for the weights, checkpoints and logs")
    if folder.is_dir() and any(folder.iterdir()):
        held = sorted(p.name for p in folder.iterdir())
        more = ", ..." if len(held) > 4 else ""
        resume = " or --resume to go on with the networks already finished there" if command == "train-world" else ""
        fail(f"--out: {folder} already holds a training ({', '.join(held[:4])}{more}): choose a new --out{resume}; "
             "weights are never overwritten (a store made with them checks their hash)")


def train(
    config: ConfigOption = None,
    sensor: Annotated[str, typer.Option(help="sentinel-2 or landsat")] = "sentinel-2",
    out: Annotated[Path, typer.Option(help="folder for checkpoints, logs, the final weights and accuracy")] = Path(
        "glacierwatch-out/training"
    ),
    architecture: Annotated[Optional[str], typer.Option(
        help="dunet (every stage deformable, the paper's), dunet-deep, dunet-shallow or unet; default: training.architecture")] = None,
    base: Annotated[Optional[int], typer.Option(help="first-level width; default: training.base")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="maximum epochs; default: training.epochs")] = None,
    variants: Annotated[Optional[int], typer.Option(help="augmented copies per crop; default: training.variants")] = None,
    init_weights: Annotated[Optional[Path], typer.Option(help="fine-tune these weights (e.g. the shipped ones: same "
                                                         "architecture, base and input channels) instead of starting from random")] = None,
) -> None:
    """Train the glacier network on the configured region's composites, then score it (held-out years on the
    synthetic area; held-out glaciers on a real region with training.labels: inventory)."""
    require_model()
    cfg = load_config_or_exit(config)
    if sensor not in cfg.sensors:
        fail(f"--sensor {sensor} is not configured: use one of {', '.join(cfg.sensors)}")
    overrides = {k: v for k, v in (("architecture", architecture), ("base", base), ("epochs", epochs), ("variants", variants)) if v is not None}
    try:
        options = cfg.training.model_validate({**cfg.training.model_dump(), **overrides})
    except ValueError as err:
        fail(f"training option: {err}")
    from pipeline.training.from_config import train_and_evaluate

    require_new_training_folder(out / sensor, "train")
    if init_weights is not None and not init_weights.is_file():
        fail(f"--init-weights {init_weights}: no such file")
    from pipeline.model.weights import WeightsError

    try:
        result = train_and_evaluate(cfg, sensor, options, out / sensor, console=console, init_weights=init_weights)
    except WeightsError as err:
        fail(f"--init-weights: {err}")
    table = Table(title=f"Accuracy on held-out years {list(options.test_years)} ({sensor})")
    for column in ("model", "zone", "year", "PA", "UA", "OA", "F1", "IoU"):
        table.add_column(column)
    for row in result.accuracy.itertuples():
        table.add_row(row.model, row.zone, str(row.year), *(f"{getattr(row, m):.3f}" for m in ("PA", "UA", "OA", "F1", "IoU")))
    console.print(table)
    console.print(f"weights: {result.weights}  (card: {result.weights.with_suffix('.json')})")



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
    learning_rate: Annotated[float, typer.Option(help="Adam's first learning rate (decays by 0.9 per epoch)")] = 1e-3,
    init_weights: Annotated[Optional[Path], typer.Option(help="fine-tune these weights (same architecture and base) instead of starting from random")] = None,
    seed: Annotated[int, typer.Option(help="training seed")] = 0,
    terrain: Annotated[str, typer.Option(help="terrain channels, comma-separated (slope, relative_elevation), or 'none'")] = "slope,relative_elevation",
    resume: Annotated[bool, typer.Option("--resume", help="load networks whose last checkpoint is already in --out")] = False,
    with_area: Annotated[bool, typer.Option("--with-area", help="mix in the embedded area's training years (config -c)")] = False,
    area_repeat: Annotated[int, typer.Option(help="with --with-area: each area sample enters training this many times")] = 1,
    small_glacier_km2: Annotated[float, typer.Option(help="glaciers below this area (km²) weigh more in the loss; 0: every pixel alike")] = 0.0,
    dark_ice_share: Annotated[float, typer.Option(help="share of the training scenes whose bare ice is darker than the "
                                                       "library's dirty ice (validation and test stay the cards' world)")] = 0.0,
    config: ConfigOption = None,
) -> None:
    """Train on the Earth-like training world and score on held-out scenes (other seeds, terrain, glaciers)."""
    require_model()
    from pipeline.training.fit import TrainingConfig
    from pipeline.training.world import train_on_world

    if sensor not in ("sentinel-2", "landsat"):
        fail(f"--sensor {sensor}: use sentinel-2 or landsat")
    try:
        configs = [
            TrainingConfig(architecture=a, base=base, crop_size=128, variants=1, focal_alpha=0.5, max_epochs=epochs,
                           lr_decay=0.9, test_fraction=0.0, loss_threshold=0.0, seed=seed, learning_rate=learning_rate,
                           small_glacier_km2=small_glacier_km2)
            for a in (architecture, *(compare or ()))
        ]
    except ValueError as err:
        fail(f"training option: {err}")
    if area_repeat < 1:
        fail(f"--area-repeat {area_repeat}: use 1 or more")
    if not 0.0 <= dark_ice_share <= 1.0:
        fail(f"--dark-ice-share {dark_ice_share}: use a share within 0..1")
    area = None
    if with_area:
        from pipeline.run import ensure_study_area

        area = load_config_or_exit(config)
        ensure_study_area(area, console)
    channels = () if terrain.strip() in ("", "none") else tuple(t.strip() for t in terrain.split(","))
    if "elevation" in channels:
        fail("--terrain elevation: absolute elevation ties the network to the training elevations; use relative_elevation")
    if init_weights is not None and not init_weights.is_file():
        fail(f"--init-weights {init_weights}: no such file")
    if not resume:
        require_new_training_folder(out / sensor, "train-world")
    from pipeline.model.weights import WeightsError

    try:  # weights that cannot start this training are refused before any scene is drawn
        result = train_on_world(sensor, out / sensor, n_train=scenes, n_valid=valid_scenes, n_test=test_scenes, size=size,
                                config=configs[0], compare=configs[1:], terrain=channels, resume=resume, area=area, area_repeat=area_repeat,
                                init_weights=init_weights, dark_ice_share=dark_ice_share, console=console)
    except WeightsError as err:
        fail(f"{'--init-weights' if init_weights else '--resume'}: {err}")
    table = Table(title=f"Accuracy on held-out world scenes ({sensor})")
    for column in ("model", "zone", "PA", "UA", "F1", "IoU"):
        table.add_column(column)
    for row in result.accuracy.itertuples():
        table.add_row(row.model, row.zone, *(f"{getattr(row, m):.3f}" for m in ("PA", "UA", "F1", "IoU")))
    console.print(table)
    console.print(f"weights: {result.weights}  ({result.seconds / 60:.1f} min)")
