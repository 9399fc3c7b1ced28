"""The network a run or `predict` uses: its model card checked, then its predictor loaded once per process.

`read_card` is the cheap check done before anything is written (the card beside the weights,
against the file and the sensor's bands). `cached_predictor` is what every Dask task calls: tasks
carry only the weights path and sha256, and the `TorchPredictor` is built the first time a worker
process sees that (path, sha256, device, half), then shared by its threads (an lru_cache behind a lock).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

from pipeline.model.predictor import TorchPredictor
from pipeline.model.weights import ModelCard, WeightsError, card_path, load_model

__all__ = ["cached_predictor", "load_predictor", "read_card"]

_LOCK = threading.Lock()


def read_card(weights: str | Path, sensor: str | None = None) -> ModelCard:
    """The model card beside `weights`, checked against the file and, given `sensor`, its bands.

    Cheap (the card's JSON and the safetensors header; the weights are hashed by the loader), so
    a run calls it for every sensor before anything is written: a file that is not safetensors,
    a card of another architecture, width or channel count, or weights trained on bands the
    sensor does not have are refused here, with the file and the mismatch named.
    """
    from pydantic import ValidationError

    from catalog.providers import REFLECTANCE_BANDS
    from pipeline.model.weights import check_card, read_header

    weights = Path(weights)
    read_header(weights)  # not safetensors (e.g. a pickle): refused before anything else is looked at
    card_file = card_path(weights)
    if not card_file.is_file():
        raise WeightsError(f"no model card {card_file} beside {weights}; weights without a card cannot be fed correctly")
    try:
        card = ModelCard.model_validate_json(card_file.read_text())
    except ValidationError as err:
        raise WeightsError(f"{card_file} is not a model card ({err.error_count()} errors, first: {err.errors()[0]['msg']})") from None
    check_card(weights, card)
    if sensor is not None:
        bands = REFLECTANCE_BANDS[sensor]
        missing = [b for b in card.recipe.bands if b not in bands]
        if missing:
            raise WeightsError(
                f"{weights} was trained on bands {list(card.recipe.bands)}; {sensor} has {list(bands)} "
                f"(missing {missing}): use weights trained for {sensor} (a run: sensors.{sensor}.weights; predict: --weights)"
            )
    return card


@lru_cache(maxsize=4)
def load_predictor(path: str, weights_sha256: str, device: str, half: bool) -> TorchPredictor:
    """The lru-cached loader behind `cached_predictor` (call that one: this has no lock)."""
    model, card = load_model(path, device)
    if card.weights_sha256 != weights_sha256:
        raise WeightsError(
            f"{path} changed since the graph was built (sha256 {card.weights_sha256}, expected {weights_sha256}): "
            "rerun with the weights the run started with"
        )
    return TorchPredictor(model, card.recipe, device=device, half=half, name=card.architecture)


def cached_predictor(path: str, weights_sha256: str, device: str, half: bool, mirror: bool = False) -> TorchPredictor:
    """This process's predictor for the weights (loaded on first use, then shared by every task); `mirror`:
    tiles go through it mirrored north-south (`pipeline.model.weights.TrainingDomain.mirrors`), the same network."""
    with _LOCK:  # lru_cache does not stop two threads from both loading on a first, concurrent miss
        return load_predictor(path, weights_sha256, device, half).mirrored(mirror)
