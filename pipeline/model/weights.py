"""Model weights as safetensors plus a JSON model card; loading never unpickles.

Weights come from other people's machines, so only the safetensors format is accepted: it is
plain tensors and a JSON header, with no code to execute. The weights file also records its
architecture, width and channels in its own metadata, so a file paired with the wrong card or
the wrong model is refused with both named, not loaded into garbage.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from pipeline.model.dunet import ARCHITECTURES, SegmentationUNet
from pipeline.model.inputs import InputRecipe

MAX_HEADER_BYTES = 100_000_000


class WeightsError(ValueError):
    """A weights file that cannot or must not be loaded."""


class TrainingDomain(BaseModel):
    """What the weights were trained on: a run on other data is a guess, and the pre-flight says so.

    ``kind``: "synthetic" (a generated study area only), "world" (the Earth-like training world,
    catalog.synthetic.world: library spectra, real and procedural relief), "real" or "mixed".
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["synthetic", "world", "real", "mixed"]
    sensors: tuple[str, ...] = ()
    resolution_m: float | None = None
    elevation_m: tuple[float, float] | None = None
    latitude_deg: tuple[float, float] | None = None
    regions: tuple[str, ...] = ()

    def merged(self, parent: TrainingDomain | None) -> TrainingDomain:
        """This training's domain with that of the weights it fine-tuned (`parent`): what the network has
        seen is both. Replaced, a network trained on the embedded area alone and fine-tuned on two world
        scenes read "world" and got past the refusal of synthetic-only weights on real scenes."""
        if parent is None:
            return self
        kinds = {self.kind, parent.kind}
        kind = self.kind if len(kinds) == 1 else "mixed"

        def span(a, b):
            return b if a is None else a if b is None else (min(a[0], b[0]), max(a[1], b[1]))

        return TrainingDomain(
            kind=kind, sensors=tuple(dict.fromkeys((*parent.sensors, *self.sensors))),
            resolution_m=self.resolution_m if parent.resolution_m in (None, self.resolution_m) else None,
            elevation_m=span(self.elevation_m, parent.elevation_m), latitude_deg=span(self.latitude_deg, parent.latitude_deg),
            regions=tuple(dict.fromkeys((*parent.regions, *self.regions))))

    def mirrors(self, latitude_deg: float) -> bool:
        """Whether a scene at `latitude_deg` goes to these weights mirrored north-south: it lies in the other
        hemisphere than every scene they were trained on (`TorchPredictor`'s `mirror`). Unknown latitudes: no.

        The training world draws its scenes at 30-60 deg N in July-September, so the networks have seen
        the sun from the south only, and glaciers kept on the slopes facing away from it. A scene of the
        southern summer mirrored north-south is a scene of that kind: the sun's azimuth az becomes
        180 - az (its morning still in the east), the shade-side slopes face north. Measured on the 48
        further held-out world scenes mirrored north-south (a southern world drawn by mirroring the
        northern one; `tests/bench/eval_world_held_out.py --southern`): IoU 0.879 (Sentinel-2) and 0.864
        (Landsat) fed as they are, against 0.909 and 0.888 on the same scenes unmirrored, which the
        mirrored feed gives back (by construction on such scenes; real southern scenes are not in reach).
        """
        if self.latitude_deg is None:
            return False
        south, north = self.latitude_deg
        return (south > 0 > latitude_deg) or (north < 0 < latitude_deg)

    def describe(self) -> str:
        parts = [f"{self.kind} scenes"]
        if self.regions:
            parts.append("of " + ", ".join(self.regions))
        if self.sensors:
            parts.append(f"({', '.join(self.sensors)}" + (f" at {self.resolution_m:g} m)" if self.resolution_m else ")"))
        if self.elevation_m:
            parts.append(f"elevations {self.elevation_m[0]:.0f}-{self.elevation_m[1]:.0f} m")
        if self.latitude_deg:
            parts.append(f"latitudes {self.latitude_deg[0]:.1f}-{self.latitude_deg[1]:.1f} deg")
        return " ".join(parts)


class ModelCard(BaseModel):
    """Everything needed to rebuild, feed and trust a set of weights."""

    model_config = ConfigDict(frozen=True)

    architecture: str
    base: int
    in_channels: int
    recipe: InputRecipe
    weights_file: str
    weights_sha256: str
    weights_dtype: str = "float32"
    training_data: str = ""
    seed: int | None = None
    metrics: dict[str, float] = {}
    domain: TrainingDomain | None = None
    """What it was trained on (None: a card written before domains were recorded: unknown)."""
    halo_px: int | None = None
    """Measured for these weights: chunked inference with this halo equals the whole-image
    prediction within 1/255 (None: the architecture's default, `pipeline.model.halo`)."""


def card_path(weights_path: Path) -> Path:
    """The card lives beside the weights: `x.safetensors` -> `x.json`."""
    return weights_path.with_suffix(".json")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe(architecture: str, base: int | str, in_channels: int | str) -> str:
    return f"{architecture} (base width {base}, {in_channels} input channels)"


def save_weights(
    model: SegmentationUNet,
    recipe: InputRecipe,
    path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    training_data: str = "",
    seed: int | None = None,
    metrics: dict[str, float] | None = None,
    domain: TrainingDomain | None = None,
) -> ModelCard:
    """Write `path` (safetensors) and its card; float16 halves the file for shipping."""
    path = Path(path)
    tensors = {
        key: (value.to(dtype) if value.is_floating_point() else value).detach().cpu().contiguous()
        for key, value in model.state_dict().items()
    }
    header = {"architecture": model.architecture, "base": str(model.base), "in_channels": str(model.in_channels)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path, metadata=header)
    card = ModelCard(
        architecture=model.architecture,
        base=model.base,
        in_channels=model.in_channels,
        recipe=recipe,
        weights_file=path.name,
        weights_sha256=sha256(path),
        weights_dtype=str(dtype).removeprefix("torch."),
        training_data=training_data,
        seed=seed,
        metrics=metrics or {},
        domain=domain,
    )
    card_path(path).write_text(card.model_dump_json(indent=2))
    return card


def _check_format(path: Path) -> None:
    """Refuse anything that is not a safetensors file, from its first bytes (never torch.load)."""
    with path.open("rb") as f:
        prefix = f.read(9)
    size = path.stat().st_size
    header_len = int.from_bytes(prefix[:8], "little") if len(prefix) == 9 else -1
    if not (0 < header_len <= min(size - 8, MAX_HEADER_BYTES)) or prefix[8:9] != b"{":
        raise WeightsError(
            f"{path} is not a safetensors file (pickled PyTorch checkpoints are refused: they can run "
            "code); convert it on a trusted machine with safetensors.torch.save_file"
        )


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata, after checking the file really is safetensors (never torch.load)."""
    _check_format(path)
    try:
        with safe_open(path, framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}, f.metadata() or {}
    except SafetensorError as error:
        raise WeightsError(f"{path} is not a valid safetensors file: {error}") from error


def read_header(path: str | Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor shapes and metadata of a safetensors file, without reading any tensor (never unpickles)."""
    path = Path(path)
    _check_format(path)
    try:
        with safe_open(path, framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}, f.metadata() or {}
    except SafetensorError as error:
        raise WeightsError(f"{path} is not a valid safetensors file: {error}") from error


def check_card(path: str | Path, card: ModelCard) -> None:
    """Refuse weights whose card contradicts itself or the file (header metadata, tensor names and shapes).

    Cheap: reads the safetensors header only and builds the card's network on PyTorch's "meta"
    device (shapes, no memory), so a run can check every sensor's weights before it writes.
    """
    path = Path(path)
    card_file = card_path(path)
    shapes, header = read_header(path)
    if card.architecture not in ARCHITECTURES:
        raise WeightsError(f"{card_file} names architecture {card.architecture!r}; known: {sorted(ARCHITECTURES)}")
    if card.recipe.n_channels != card.in_channels:
        raise WeightsError(
            f"{card_file} says {card.in_channels} input channels, but its recipe builds {card.recipe.n_channels} "
            f"(bands {list(card.recipe.bands)}, indices {list(card.recipe.indices)}, terrain {list(card.recipe.terrain)}): "
            f"the card does not describe {path.name}; write weights and card together with save_weights"
        )
    stated = {"architecture": card.architecture, "base": str(card.base), "in_channels": str(card.in_channels)}
    disagree = [k for k, v in stated.items() if k in header and header[k] != v]
    with torch.device("meta"):
        model = ARCHITECTURES[card.architecture](card.in_channels, card.base)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    mismatched = sorted(set(expected) ^ set(shapes)) or [key for key in expected if expected[key] != shapes[key]]
    if disagree or mismatched:
        found = _describe(header.get("architecture", "unknown"), header.get("base", "?"), header.get("in_channels", "?"))
        raise WeightsError(
            f"{path} holds {found}, but its card {card_file} describes "
            f"{_describe(card.architecture, card.base, card.in_channels)}"
            + (f"; first mismatched tensors: {mismatched[:3]}" if mismatched else "")
            + ": pair the weights with their own card (both are written by save_weights)"
        )


def load_state(model: SegmentationUNet, path: str | Path) -> None:
    """Load `path` into `model` as fp32, refusing weights of another architecture or width."""
    path = Path(path)
    tensors, header = _read_safetensors(path)
    expected = model.state_dict()
    mismatched = sorted(set(expected) ^ set(tensors)) or [
        key for key, value in expected.items() if value.shape != tensors[key].shape
    ]
    if mismatched or header.get("architecture", model.architecture) != model.architecture:
        found = _describe(header.get("architecture", "unknown"), header.get("base", "?"), header.get("in_channels", "?"))
        raise WeightsError(
            f"{path} holds {found}, but the model is {_describe(model.architecture, model.base, model.in_channels)}"
            + (f"; first mismatched tensors: {mismatched[:3]}" if mismatched else "")
        )
    model.load_state_dict({key: value.to(expected[key].dtype) for key, value in tensors.items()})


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[SegmentationUNet, ModelCard]:
    """Rebuild the network its card describes, check the weights' sha256, and load them in fp32."""
    path = Path(path)
    card_file = card_path(path)
    if not card_file.is_file():
        raise WeightsError(f"no model card {card_file} beside {path}; weights without a card cannot be fed correctly")
    card = ModelCard.model_validate_json(card_file.read_text())
    digest = sha256(path)
    if digest != card.weights_sha256:
        raise WeightsError(f"{path} has sha256 {digest}, its card {card_file} records {card.weights_sha256}")
    if card.architecture not in ARCHITECTURES:
        raise WeightsError(f"{card_file} names architecture {card.architecture!r}; known: {sorted(ARCHITECTURES)}")
    model = ARCHITECTURES[card.architecture](card.in_channels, card.base)
    load_state(model, path)
    return model.to(device).eval(), card

