"""D-UNet (Jin et al. 2019) for glacier segmentation, and the plain U-Net it is compared with.

Both are one `SegmentationUNet`: the D-UNet swaps every 3x3 conv block for a deformable one and
adds a DAC bridge (CE-Net, Gu et al. 2019) at the bottom; everything else (widths, pooling,
upsampling, skips) is shared, so a comparison between them measures only those two ideas.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights

from pipeline.model.halo import LEVELS, SIZE_MULTIPLE


class ConvBlock(nn.Sequential):
    """3x3 conv, batch norm, ReLU: the plain U-Net block."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DeformableBlock(nn.Module):
    """Offset-predicting conv, 3x3 deformable conv, batch norm, ReLU.

    The offset conv starts at zero, so a fresh block samples the regular 3x3 grid and the network
    starts from a plain U-Net; it learns to bend the grid along glacier margins. The offset conv
    and the deformable conv run in fp32 even under autocast: the deformable kernels have no
    reliable half-precision path, and sub-pixel offsets lose meaning in bf16. On CPU it runs the
    compiled kernel of `pipeline.model.deform_cpu` (torchvision's CPU kernel is several times slower).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        # imported here, not with the module: a plain U-Net (what ships) never needs torchvision,
        # whose import pulls in torch._dynamo (~2 s on a fresh worker, `pipeline.inference.tile_forward`)
        from torchvision.ops import DeformConv2d

        super().__init__()
        self.offset = nn.Conv2d(in_channels, 2 * 3 * 3, 3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.deform = DeformConv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            offset = self.offset(x)
            if x.device.type == "cpu":
                from pipeline.model.deform_cpu import deform_conv3x3_cpu  # numba: only where a deformable block runs

                x = deform_conv3x3_cpu(x, offset, self.deform.weight)  # compiled im2col (pipeline.model.deform_cpu)
                if self.deform.bias is not None:  # a folded norm (`fold_norm`); the compiled kernel takes no bias
                    x = x + self.deform.bias.view(1, -1, 1, 1)
            else:
                x = self.deform(x, offset)
        return self.act(self.norm(x))

    def fold_norm(self) -> None:
        """Fold the (eval-mode) batch norm into the deformable conv's weights and a bias."""
        if isinstance(self.norm, nn.BatchNorm2d):
            weight, bias = fuse_conv_bn_weights(
                self.deform.weight, self.deform.bias, self.norm.running_mean, self.norm.running_var,
                self.norm.eps, self.norm.weight, self.norm.bias,
            )
            self.deform.weight, self.deform.bias, self.norm = weight, bias, nn.Identity()


class DACBlock(nn.Module):
    """Dense atrous convolution (CE-Net): four cascaded branches, receptive fields 3/7/9/19.

    Branches reuse the same dilated convs as in CE-Net (d1; d3; d1->d3; d1->d3->d5), the three
    deeper ones end in a shared 1x1 conv, and all are added to the input as a residual, widening
    the bottom's view to whole glacier tongues without more pooling.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dilate1 = nn.Conv2d(channels, channels, 3, padding=1, dilation=1)
        self.dilate3 = nn.Conv2d(channels, channels, 3, padding=3, dilation=3)
        self.dilate5 = nn.Conv2d(channels, channels, 3, padding=5, dilation=5)
        self.project = nn.Conv2d(channels, channels, 1)
        self.act = nn.ReLU()  # not in place: d1 and d13 feed later branches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.dilate1(x)
        d13 = self.dilate3(d1)
        branches = (
            d1,
            self.project(self.dilate3(x)),
            self.project(d13),
            self.project(self.dilate5(d13)),
        )
        return x + sum(self.act(b) for b in branches)


def _stage(in_channels: int, out_channels: int, deformable: bool) -> nn.Sequential:
    block = DeformableBlock if deformable else ConvBlock
    return nn.Sequential(block(in_channels, out_channels), block(out_channels, out_channels))


ALL_LEVELS = frozenset(range(LEVELS + 1))
"""Levels 0 (full resolution) .. LEVELS - 1 for encoder/decoder stages, LEVELS for the bottom."""


class SegmentationUNet(nn.Module):
    """4-level U-Net returning one glacier logit per pixel, (N, C, H, W) -> (N, 1, H, W).

    Widths are base*(1, 2, 4, 8) over the levels and base*16 at the bottom (32..512 at base=32).
    `deformable` names the levels whose stages (encoder and decoder at that level, or the bottom
    at level LEVELS) are deformable: True for all, False for none; `dac` inserts the DAC bridge
    between encoder and decoder.
    """

    def __init__(
        self, in_channels: int = 6, base: int = 32, *, deformable: bool | frozenset[int], dac: bool
    ) -> None:
        super().__init__()
        levels = ALL_LEVELS if deformable is True else frozenset() if deformable is False else frozenset(deformable)
        if not levels <= ALL_LEVELS:
            raise ValueError(f"deformable levels {sorted(levels)} outside 0..{LEVELS}")
        self.in_channels = in_channels
        self.base = base
        widths = [base * 2**level for level in range(LEVELS + 1)]
        self.encoder = nn.ModuleList(
            _stage(c_in, c_out, level in levels)
            for level, (c_in, c_out) in enumerate(zip([in_channels, *widths[:-2]], widths[:-1]))
        )
        self.pool = nn.MaxPool2d(2)
        self.bottom = _stage(widths[-2], widths[-1], LEVELS in levels)
        self.bridge = DACBlock(widths[-1]) if dac else nn.Identity()
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, 2, stride=2) for c_in, c_out in zip(widths[:0:-1], widths[-2::-1])
        )
        self.decoder = nn.ModuleList(_stage(2 * c, c, level in levels) for level, c in reversed(list(enumerate(widths[:-1]))))
        self.head = nn.Conv2d(base, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % SIZE_MULTIPLE or x.shape[-1] % SIZE_MULTIPLE:
            raise ValueError(
                f"input H, W = {tuple(x.shape[-2:])} must be multiples of {SIZE_MULTIPLE}; "
                "pad the tile (reflect) first, as TorchPredictor does"
            )
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bridge(self.bottom(x))
        # Each skip is let go once joined: in inference nothing else holds it, so a level's skip
        # is freed before the finer levels run (the shipped U-Net's CPU forward: 617 -> 500 B per
        # input pixel at its peak, tests/test_forward_memory.py). In training autograd keeps it anyway.
        for up, stage in zip(self.upsample, self.decoder):
            x = stage(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)

    def for_inference(self) -> SegmentationUNet:
        """An eval-mode copy with every batch norm folded into the convolution before it.

        Same function (to float rounding: logits within ~1e-5), one memory pass less per block:
        the shipped U-Net's CPU forward ran 1.21x (fp32) and 1.13x (bf16) the unfolded one's
        (1,216 px window, 2 threads). `self` is left as it is, so a model in training can be scored.
        """
        model = copy.deepcopy(self).eval()
        for module in model.modules():
            if isinstance(module, ConvBlock) and isinstance(module[1], nn.BatchNorm2d):
                module[0] = fuse_conv_bn_eval(module[0], module[1])
                module[1] = nn.Identity()
            elif isinstance(module, DeformableBlock):
                module.fold_norm()
        return model


class DUNet(SegmentationUNet):
    """The paper's D-UNet: deformable blocks at every stage and a DAC bridge."""

    architecture = "dunet"

    def __init__(self, in_channels: int = 6, base: int = 32) -> None:
        super().__init__(in_channels, base, deformable=True, dac=True)


class DeepDUNet(SegmentationUNet):
    """Deformable blocks only where the grid is coarse (1/8, 1/16 resolution and the bottom) + DAC.

    The deformable sampling costs per pixel, so at full resolution it dominates the network (CPU
    inference, base 16, 2 threads: the all-stage D-UNet at 0.35x a plain U-Net's speed, 1/13 before
    the compiled kernel; this one at 0.7x; tests/bench/bench_model_cpu.py); at the deep levels it
    bends the receptive field of whole tongues for a fraction of the cost.
    """

    architecture = "dunet-deep"

    def __init__(self, in_channels: int = 6, base: int = 32) -> None:
        super().__init__(in_channels, base, deformable=frozenset({LEVELS - 1, LEVELS}), dac=True)


class ShallowDUNet(SegmentationUNet):
    """Deformable blocks at the two finest levels only (Jin et al.'s DUNet places them shallow) + DAC."""

    architecture = "dunet-shallow"

    def __init__(self, in_channels: int = 6, base: int = 32) -> None:
        super().__init__(in_channels, base, deformable=frozenset({0, 1}), dac=True)


class UNet(SegmentationUNet):
    """The baseline: same widths as DUNet, plain convolutions, no DAC."""

    architecture = "unet"

    def __init__(self, in_channels: int = 6, base: int = 32) -> None:
        super().__init__(in_channels, base, deformable=False, dac=False)


ARCHITECTURES: dict[str, type[SegmentationUNet]] = {cls.architecture: cls for cls in (DUNet, DeepDUNet, ShallowDUNet, UNet)}
