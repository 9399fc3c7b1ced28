"""The `Predictor` interface, and the predictor that runs a trained D-UNet or U-Net.

Every glacier classifier (the D-UNet, the U-Net baseline, the band-ratio and NDSI thresholds)
takes the same reflectance tile and returns a glacier probability, so accuracy tables and maps
can put them side by side without knowing which is which.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from pipeline.model.device_inputs import build_inputs as build_inputs_on_device
from pipeline.model.device_inputs import pad_to_multiple
from pipeline.model.dunet import SIZE_MULTIPLE, DeformableBlock, SegmentationUNet
from pipeline.model.inputs import InputRecipe


@runtime_checkable
class Predictor(Protocol):
    """Glacier probability for one tile."""

    name: str

    def predict(self, reflectance: np.ndarray, terrain: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """(band, y, x) float32 reflectance, NaN for no-data, bands in the predictor's order ->
        (y, x) float32 probability in [0, 1]; no-data pixels get 0."""
        ...


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def half_dtype(device: torch.device | str) -> torch.dtype | None:
    """The half precision `device` runs natively, None where it has none (fp32 then).

    fp16 on CUDA. bf16 on a CPU with bf16 instructions (AVX512-BF16 or AMX): oneDNN's bf16
    convolutions ran the shipped U-Net at 2.0x its fp32 forward on 2 threads of an EPYC with
    AVX512-BF16; a CPU without them would emulate bf16, slower than fp32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu":
        try:
            native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        except AttributeError:  # a torch without these probes: assume none
            native = False
        return torch.bfloat16 if native else None
    return None


def forward_memory_format(model: torch.nn.Module, device: torch.device) -> torch.memory_format:
    """The layout `model`'s forward runs fastest in on `device`, as measured.

    Channels-last runs oneDNN's convolutions without layout reorders: ~1.5x the NCHW forward of
    the shipped U-Net on 2 CPU threads (512-1024 px tiles). On CUDA it is what cuDNN's tensor-core
    kernels want: the shipped U-Nets ran 2.3x (fp32) and 3.1x (fp16) their NCHW forward at 2048 px
    on an H200 (docs/scaling.md). Networks with deformable blocks stay NCHW on CUDA, the only
    layout measured for them there.
    """
    deformable = any(isinstance(m, DeformableBlock) for m in model.modules())
    return torch.channels_last if device.type == "cpu" or not deformable else torch.contiguous_format


class TorchPredictor:
    """A trained segmentation network with the recipe it was trained on.

    Tiles are reflect-padded up to a multiple of 16 (so margins see plausible context rather than
    zeros) and cropped back. `half` runs autocast in the device's native half precision
    (`half_dtype`: fp16 on GPU, bf16 on a CPU with bf16 instructions; ignored where there is none,
    as it would be slower, not faster); deformable convs stay fp32 inside the network. The network runs
    as `model.for_inference()`, batch norms folded into the convolutions. Off the CPU the inputs
    are built on the device (`pipeline.model.device_inputs`), on the CPU by the recipe in numpy.
    """

    def __init__(
        self,
        model: SegmentationUNet,
        recipe: InputRecipe,
        device: torch.device | str | None = None,
        half: bool = False,
        name: str | None = None,
        device_inputs: bool | None = None,
        mirror: bool = False,
    ) -> None:
        if recipe.n_channels != model.in_channels:
            raise ValueError(
                f"recipe gives {recipe.n_channels} channels {recipe.channel_names}, "
                f"model expects {model.in_channels}"
            )
        self.device = torch.device(device) if device is not None else default_device()
        self.memory_format = forward_memory_format(model, self.device)
        # an eval copy with its batch norms folded (`SegmentationUNet.for_inference`): `model` stays as it was
        self.model = model.for_inference().to(self.device, memory_format=self.memory_format)
        self.recipe = recipe
        self.autocast_dtype = half_dtype(self.device) if half else None  # None: fp32
        self.name = name or model.architecture
        # Where the inputs are built (None: on the device exactly when it is not the CPU). On a GPU
        # numpy's build on the host bounded a tile at 4.5 Mpx/s against a 530 Mpx/s forward (H200,
        # docs/scaling.md); on the CPU numpy's build is the faster one and bit for bit training's.
        self.device_inputs = self.device.type != "cpu" if device_inputs is None else device_inputs
        # Each tile goes through the network mirrored north-south and its output back: a scene of the other
        # hemisphere than the training's (`TrainingDomain.mirrors`). Mirrored once padded to the size
        # multiple, so every tile's rows keep one phase on the 16-px lattice and chunked maps stay seamless.
        self.mirror = mirror

    def mirrored(self, mirror: bool = True) -> TorchPredictor:
        """This predictor fed mirrored north-south (`mirror`) or not, sharing its network (no second copy)."""
        if mirror == self.mirror:
            return self
        view = copy.copy(self)
        view.mirror = mirror
        return view

    @property
    def half(self) -> bool:
        """Whether the forward runs in half precision (`autocast_dtype`)."""
        return self.autocast_dtype is not None

    def predict(self, reflectance: np.ndarray, terrain: dict[str, np.ndarray] | None = None) -> np.ndarray:
        return self.predict_batch([reflectance], terrain)[0]

    def predict_batch(self, reflectances: Sequence[np.ndarray], terrain: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """(n, y, x) probability of n (band, y, x) scenes of one tile sharing its terrain: one forward pass."""
        logits, valid = self._forward(reflectances, terrain)
        with torch.inference_mode():
            probability = torch.where(valid, torch.sigmoid(logits), 0.0)
        return probability.cpu().numpy()  # float32, as the logits

    def logits_batch(
        self, reflectances: Sequence[np.ndarray], terrain: dict[str, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, y, x) float32 logits and valid masks of n scenes of one tile, reflect-padded to the size multiple."""
        logits, valid = self._forward(reflectances, terrain)
        return logits.cpu().numpy(), valid.cpu().numpy()

    def _forward(
        self, reflectances: Sequence[np.ndarray], terrain: dict[str, np.ndarray] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, y, x) logits and valid masks on the device, the inputs built where `device_inputs` says."""
        batch, valid = self._inputs(reflectances, terrain)
        height, width = valid.shape[-2:]
        with torch.inference_mode(), torch.autocast(self.device.type, self.autocast_dtype, enabled=self.half):
            if self.mirror:
                batch = batch.flip(-2)
            logits = self.model(batch).float()
            if self.mirror:
                logits = logits.flip(-2)
        return logits[:, 0, :height, :width], valid

    def _inputs(
        self, reflectances: Sequence[np.ndarray], terrain: dict[str, np.ndarray] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, channel, y, x) network inputs, padded to the size multiple in the forward's layout, and
        (n, y, x) valid masks. Only these outlive the call: the built planes and the unpadded stack
        are let go before the forward runs (they were 2 x 40 B per pixel beside its peak)."""
        if self.device_inputs:
            stacked = torch.from_numpy(np.stack(reflectances)).to(self.device)
            layers = {k: torch.from_numpy(np.array(v)).to(self.device) for k, v in (terrain or {}).items()}  # own dtype, as numpy's build
            inputs, valid = build_inputs_on_device(self.recipe, stacked, layers)
            del stacked, layers
        else:
            built = [self.recipe.build_inputs(r, terrain) for r in reflectances]
            valid = torch.from_numpy(np.stack([b[1] for b in built])).to(self.device)
            inputs = torch.from_numpy(np.stack([b[0] for b in built])).to(self.device)
            del built
        return pad_to_multiple(inputs, SIZE_MULTIPLE).contiguous(memory_format=self.memory_format), valid
