"""Training: augmentation keeps labels on their pixels, the loss falls, and a seed repeats a run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.model.inputs import InputRecipe
from pipeline.training.fit import Crop, TrainingConfig, augment, cut_crops, split_crops, train

CONFIG = TrainingConfig(base=4, crop_size=32, variants=2, batch_size=4, max_epochs=3, loss_threshold=0.0, seed=7)


def synthetic_samples(n: int = 2, size: int = 64) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Bright 'ice' blobs on noisy 'rock': learnable in a few steps."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for _ in range(n):
        yy, xx = np.mgrid[:size, :size]
        cy, cx = rng.uniform(16, size - 16, 2)
        label = ((yy - cy) ** 2 + (xx - cx) ** 2 < 20**2).astype(np.float32)
        images.append((rng.normal(0, 0.3, (6, size, size)) + label).astype(np.float32))
        labels.append(label)
    return images, labels


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    images, labels = synthetic_samples()
    recipe = InputRecipe(mean=(0.0,) * 6, std=(1.0,) * 6)
    return [
        (train(images, labels, recipe, CONFIG, out, show_progress=False), out)
        for out in (tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b"))
    ]


@pytest.mark.slow
def test_training_lowers_the_loss(two_runs):
    losses = [record["train_loss"] for record in two_runs[0][0].history]
    assert len(losses) == 3 and losses[-1] < losses[0]


@pytest.mark.slow
def test_same_seed_gives_the_same_loss_sequence(two_runs):
    (first, _), (second, _) = two_runs
    assert [r["train_loss"] for r in first.history] == [r["train_loss"] for r in second.history]


@pytest.mark.slow
def test_every_epoch_leaves_a_checkpoint_and_a_log(two_runs):
    _, out = two_runs[0]
    assert sorted(p.name for p in out.glob("epoch_*.safetensors")) == [f"epoch_00{i}.safetensors" for i in (1, 2, 3)]
    log = json.loads((out / "training_log.json").read_text())
    assert [r["epoch"] for r in log] == [1, 2, 3] and "test_F1" in log[0]
    assert (out / "training_log.csv").read_text().startswith("epoch,train_loss,lr,test_PA")


def test_crops_are_non_overlapping_and_split_by_crop():
    images, labels = synthetic_samples(n=2, size=70)
    crops = cut_crops(images, labels, None, 32)
    assert len(crops) == 2 * 2 * 2
    train_crops, test_crops = split_crops(crops, 1 / 6, seed=0)
    assert len(test_crops) == 1 and len(train_crops) == 7


def test_augmentation_moves_label_and_mask_with_the_image():
    label = np.zeros((32, 32), dtype=np.float32)
    label[4:20, 2:12] = 1  # off-centre, so every rotation and mirroring moves it
    image = np.stack([label * 10.0] * 3).astype(np.float32)  # image edges coincide with label edges
    crop = Crop(image, label, label > 0)
    config = CONFIG.model_copy(update={"blur_sigma_max": 0.6, "brightness": 0.0, "contrast": 0.0})
    for variant in range(1, 8):
        out = augment(crop, variant, np.random.default_rng(variant), config)
        np.testing.assert_array_equal(out.valid, out.label > 0)
        assert (out.image[0][out.label > 0].mean() - out.image[0][out.label == 0].mean()) > 5
        assert not np.array_equal(out.label, label) or variant % 4 == 0


def test_the_fit_and_a_configs_training_section_share_one_set_of_defaults():
    from pipeline.config import Training

    section, fit = Training(), TrainingConfig()
    shared = [name for name in TrainingConfig.model_fields if name in Training.model_fields]
    assert {"architecture", "base", "crop_size", "variants", "learning_rate", "batch_size", "seed"} <= set(shared)
    assert all(getattr(section, name) == getattr(fit, name) for name in shared) and fit.max_epochs == section.epochs
    chosen = TrainingConfig.from_options(Training(base=8, epochs=3, crop_size=64, seed=5))
    assert (chosen.base, chosen.max_epochs, chosen.crop_size, chosen.seed) == (8, 3, 64, 5)
