"""Training the glacier segmentation network as in the paper (§2.2-2.3), reproducibly from a seed.

Large labelled samples (1024x1024 in the paper) are cut into non-overlapping crops (256x256);
each crop yields `variants` augmented copies (rotation, mirroring, blur, lighting); crops, with
all their copies, are split 5/6 train, 1/6 test so no test crop is seen in any form in training.
Adam (lr 1e-3) with exponential decay, batch 8, focal loss, until the epoch loss falls below a
threshold. Every augmentation is a pure function of (seed, crop, variant), so a run is repeatable
whatever the loader's order or worker count.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import Progress
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import gaussian_blur

from pipeline.config import Training
from pipeline.glaciers.accuracy import AccuracyMetrics, confusion_counts
from pipeline.model.dunet import ARCHITECTURES, SegmentationUNet
from pipeline.model.inputs import InputRecipe
from pipeline.model.losses import focal_loss
from pipeline.model.predictor import default_device
from pipeline.model.weights import TrainingDomain, save_weights

_SHARED = Training.model_fields  # the YAML's `training:` section: one home for the defaults both share


class TrainingConfig(BaseModel):
    """The fit's hyper-parameters. Those a config's ``training:`` section also sets take its
    defaults (`pipeline.config.Training`, the paper's where it states them); `from_options`
    turns that section into one of these."""

    model_config = ConfigDict(frozen=True)

    architecture: Literal["dunet", "dunet-deep", "dunet-shallow", "unet"] = _SHARED["architecture"].default
    base: int = Field(_SHARED["base"].default, gt=0)
    crop_size: int = Field(_SHARED["crop_size"].default, gt=0, multiple_of=16)
    variants: int = Field(_SHARED["variants"].default, ge=1, description="augmented copies per crop, the first one unaltered")
    test_fraction: float = Field(1 / 6, ge=0, lt=1)
    learning_rate: float = _SHARED["learning_rate"].default
    lr_decay: float = Field(_SHARED["lr_decay"].default, gt=0, le=1, description="ExponentialLR gamma, applied per epoch")
    batch_size: int = Field(_SHARED["batch_size"].default, ge=1)
    focal_alpha: float = Field(0.25, ge=0, le=1)
    focal_gamma: float = Field(2.0, ge=0)
    small_glacier_km2: float = Field(0.0, ge=0, description="world training: glaciers below this area weigh more in the loss "
                                     "(`world.small_glacier_weights`); 0: every pixel alike")
    loss_threshold: float = Field(_SHARED["loss_threshold"].default, description="stop once the epoch's mean training loss is below this")
    max_epochs: int = Field(_SHARED["epochs"].default, ge=1)
    seed: int = _SHARED["seed"].default
    blur_sigma_max: float = Field(1.5, gt=0)
    brightness: float = Field(0.1, ge=0, description="max additive shift, in normalised units")
    contrast: float = Field(0.1, ge=0, lt=1, description="max relative change of contrast")
    num_workers: int = Field(0, ge=0)
    device: str | None = Field(None, description="torch device; None: cuda if available, else cpu")

    @classmethod
    def from_options(cls, options: Training) -> TrainingConfig:
        """The hyper-parameters a config's ``training:`` section sets (its ``epochs`` is ``max_epochs``)."""
        shared = {name: getattr(options, name) for name in cls.model_fields if name in Training.model_fields}
        return cls(**shared, max_epochs=options.epochs)


class Crop(NamedTuple):
    image: np.ndarray  # (channel, y, x) float32, normalised
    label: np.ndarray  # (y, x) 0/1
    valid: np.ndarray  # (y, x) float32 loss weight: 0 = not scored (no data), 1 = a pixel, more = weighted up


def cut_crops(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    valid: Sequence[np.ndarray] | None,
    crop_size: int,
) -> list[Crop]:
    """Non-overlapping crop_size squares of every sample, row by row; edges that do not fill a crop are dropped."""
    crops = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        mask = np.ones(label.shape, dtype=np.float32) if valid is None else np.asarray(valid[i], dtype=np.float32)
        if image.shape[1:] != label.shape or label.shape != mask.shape:
            raise ValueError(f"sample {i}: image {image.shape}, label {label.shape}, valid {mask.shape} do not match")
        if min(label.shape) < crop_size:
            raise ValueError(f"sample {i} of size {label.shape} is smaller than crop_size={crop_size}")
        for y in range(0, label.shape[0] - crop_size + 1, crop_size):
            for x in range(0, label.shape[1] - crop_size + 1, crop_size):
                window = (slice(y, y + crop_size), slice(x, x + crop_size))
                crops.append(
                    Crop(image[(slice(None), *window)].astype(np.float32), label[window].astype(np.float32), mask[window])
                )
    return crops


def augment(crop: Crop, variant: int, rng: np.random.Generator, config: TrainingConfig) -> Crop:
    """Variant 0 is the crop itself; others take one of the 8 rotations/mirrorings (by variant
    number, so every orientation is used) plus random lighting and, half the time, blur.
    Geometry moves image, label and mask together; lighting and blur touch the image only."""
    image, label, valid = crop
    if variant == 0:
        return crop
    turns, mirror = variant % 4, (variant // 4) % 2 == 1
    image, label, valid = (np.rot90(a, turns, axes=(-2, -1)) for a in (image, label, valid))
    if mirror:
        image, label, valid = (a[..., ::-1] for a in (image, label, valid))
    contrast = 1.0 + rng.uniform(-config.contrast, config.contrast)
    brightness = rng.uniform(-config.brightness, config.brightness)
    mean = image.mean(axis=(1, 2), keepdims=True)
    image = (image - mean) * contrast + mean + brightness
    if rng.random() < 0.5:
        sigma = float(rng.uniform(0.5, config.blur_sigma_max))
        kernel = 2 * math.ceil(3 * sigma) + 1
        image = gaussian_blur(torch.from_numpy(np.ascontiguousarray(image)), [kernel, kernel], [sigma, sigma]).numpy()
    return Crop(*(np.ascontiguousarray(a, dtype=d) for a, d in ((image, np.float32), (label, np.float32), (valid, np.float32))))


class AugmentedCrops(Dataset):
    """`variants` augmented copies of each crop; item i is copy i % variants of crop i // variants."""

    def __init__(self, crops: Sequence[Crop], variants: int, config: TrainingConfig) -> None:
        self.crops, self.variants, self.config = crops, variants, config

    def __len__(self) -> int:
        return len(self.crops) * self.variants

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        crop_index, variant = divmod(index, self.variants)
        rng = np.random.default_rng([self.config.seed, crop_index, variant])
        image, label, valid = augment(self.crops[crop_index], variant, rng, self.config)
        return torch.from_numpy(image), torch.from_numpy(label), torch.from_numpy(valid)


def split_crops(crops: Sequence[Crop], test_fraction: float, seed: int) -> tuple[list[Crop], list[Crop]]:
    """Seeded split by crop: (train, test), at least one test crop when there are two or more crops."""
    order = np.random.default_rng(seed).permutation(len(crops))
    n_test = round(len(crops) * test_fraction)
    n_test = max(n_test, 1) if test_fraction > 0 and len(crops) > 1 else n_test
    return [crops[i] for i in order[n_test:]], [crops[i] for i in order[:n_test]]


@dataclass
class TrainingResult:
    model: SegmentationUNet
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None


def _evaluate(model: SegmentationUNet, loader: DataLoader, device: torch.device) -> AccuracyMetrics:
    counts = np.zeros((2, 2), dtype=np.int64)
    model.eval()
    with torch.inference_mode():
        for image, label, valid in loader:
            predicted = (model(image.to(device)) > 0).squeeze(1).cpu().numpy()
            counts += confusion_counts(predicted, label.numpy() > 0.5, valid.numpy() > 0)
    return AccuracyMetrics.from_confusion(counts)


def _write_log(history: list[dict[str, float]], out_dir: Path) -> None:
    (out_dir / "training_log.json").write_text(json.dumps(history, indent=2))
    with (out_dir / "training_log.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def train(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    recipe: InputRecipe,
    config: TrainingConfig,
    out_dir: str | Path,
    valid: Sequence[np.ndarray] | None = None,
    training_data: str = "",
    show_progress: bool = True,
    init: SegmentationUNet | None = None,
    domain: TrainingDomain | None = None,
) -> TrainingResult:
    """Train on normalised (channel, y, x) samples (from `recipe.build_inputs`) with 0/1 labels.

    `init`: a network of `config`'s architecture and width to start from (fine-tuning) instead
    of the seeded random initialisation. `domain`: what the samples are (`TrainingDomain`), on every
    checkpoint's card: without it a checkpoint of a synthetic-only training ran on real scenes unrefused.

    Writes `epoch_NNN.safetensors` + card and `training_log.{csv,json}` (train loss, lr, test
    metrics per epoch) to `out_dir` after every epoch, so an interrupted run leaves usable output.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    in_channels = images[0].shape[0]
    if in_channels != recipe.n_channels:
        raise ValueError(f"samples have {in_channels} channels, recipe {recipe.channel_names} has {recipe.n_channels}")
    device = torch.device(config.device) if config.device else default_device()
    train_crops, test_crops = split_crops(cut_crops(images, labels, valid, config.crop_size), config.test_fraction, config.seed)

    torch.manual_seed(config.seed)
    model = ARCHITECTURES[config.architecture](in_channels, config.base) if init is None else init
    if (model.architecture, model.base, model.in_channels) != (config.architecture, config.base, in_channels):
        raise ValueError(f"the starting network is {model.architecture} base {model.base} with {model.in_channels} channels; "
                         f"this training is {config.architecture} base {config.base} with {in_channels}")
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    train_loader = DataLoader(
        AugmentedCrops(train_crops, config.variants, config),
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
        num_workers=config.num_workers,
    )
    test_loader = DataLoader(AugmentedCrops(test_crops, 1, config), batch_size=config.batch_size)

    result = TrainingResult(model)
    with Progress(disable=not show_progress) as progress:
        task = progress.add_task("training", total=config.max_epochs * len(train_loader))
        for epoch in range(1, config.max_epochs + 1):
            started = time.perf_counter()
            model.train()
            loss_sum, n_items = 0.0, 0
            for image, label, mask in train_loader:
                logits = model(image.to(device)).squeeze(1)
                loss = focal_loss(logits, label.to(device), config.focal_alpha, config.focal_gamma, mask.to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(image)
                n_items += len(image)
                progress.update(task, advance=1, description=f"epoch {epoch} loss {loss.item():.4f}")
            lr = schedule.get_last_lr()[0]
            schedule.step()
            epoch_loss = loss_sum / n_items
            metrics = _evaluate(model, test_loader, device) if test_crops else None
            record = {"epoch": epoch, "train_loss": epoch_loss, "lr": lr}
            record |= {f"test_{k}": v for k, v in metrics.as_dict().items()} if metrics else {}
            record["seconds"] = time.perf_counter() - started
            result.history.append(record)
            result.checkpoint = out_dir / f"epoch_{epoch:03d}.safetensors"
            save_weights(
                model,
                recipe,
                result.checkpoint,
                training_data=training_data,
                seed=config.seed,
                metrics={k: float(v) for k, v in record.items() if k.startswith("test_") or k == "train_loss"},
                domain=domain,
            )
            _write_log(result.history, out_dir)
            if epoch_loss < config.loss_threshold:
                progress.update(task, completed=progress.tasks[0].total)
                break
    model.eval()
    return result
