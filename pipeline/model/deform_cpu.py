"""The 3x3 deformable convolution on CPU: one compiled pass per band of pixels, then a GEMM.

torchvision's CPU ``deform_conv2d`` and a grid_sample formulation (what this project used before)
spend most of the D-UNet's time sampling: grid_sample was 65 % and its einsum 20 % of the forward
(0.12 Mpx/s, base 16, 512 px, 2 threads). Here numba fills the im2col matrix straight from the
channels-last input (per pixel and tap one set of bilinear weights, then the tap's channels as
one contiguous run) and torch multiplies it by the weights: in inference band by band, so the
matrix stays in cache (0.58-0.69 Mpx/s for the whole network); in training whole, kept for the
weight gradient, with a compiled backward that scatters the column gradient through the same
bilinear weights (`_scatter_columns`; forward + backward 2.2-2.6x faster than grid_sample's).
Same parameters and result (to float rounding) as torchvision's ``deform_conv2d`` with stride 1,
padding 1, one offset group and no mask: points outside the image contribute zero.

Threads: numba's parallel loops take ``torch.get_num_threads()`` threads, so a worker's thread
setting holds for both. numba's OpenMP or TBB layer accepts calls from several threads at once;
its fallback "workqueue" layer does not, so calls are serialised there.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np
import torch

BAND_PIXELS = 4096
"""Pixels per im2col band: 4096 x 9 x 16 channels float32 is 2.4 MB, still in cache for the GEMM
(whole-model forward 0.59-0.70 Mpx/s here at 4096, 0.48 at 16384, 0.35 at 32768)."""


@numba.njit(parallel=True, cache=True, nogil=True)
def _fill_columns(x, offset, first, columns):  # pragma: no cover - compiled
    """columns[i * w + j - first, k * c + ch] = bilinear x[..., ch] at tap k of pixel (i, j), for the
    pixels first .. first + len(columns) - 1 in row-major order.

    x: (h, w, c) float32; offset: (h, w, 18) float32, (dy, dx) per tap in torchvision's order.
    """
    h, w, c = x.shape
    for row in numba.prange(columns.shape[0]):
        i = (first + row) // w
        j = (first + row) % w
        for k in range(9):
            base = k * c
            y = i + (k // 3 - 1) + offset[i, j, 2 * k]
            xx = j + (k % 3 - 1) + offset[i, j, 2 * k + 1]
            y0 = math.floor(y)
            x0 = math.floor(xx)
            fy = np.float32(y - y0)
            fx = np.float32(xx - x0)
            if y0 >= 0 and y0 + 1 < h and x0 >= 0 and x0 + 1 < w:  # all four neighbours inside
                w00 = (np.float32(1.0) - fy) * (np.float32(1.0) - fx)
                w01 = (np.float32(1.0) - fy) * fx
                w10 = fy * (np.float32(1.0) - fx)
                w11 = fy * fx
                for ch in range(c):
                    columns[row, base + ch] = (w00 * x[y0, x0, ch] + w01 * x[y0, x0 + 1, ch]
                                               + w10 * x[y0 + 1, x0, ch] + w11 * x[y0 + 1, x0 + 1, ch])
                continue
            for ch in range(c):
                columns[row, base + ch] = 0.0
            if y <= -1.0 or y >= h or xx <= -1.0 or xx >= w:
                continue
            for dy in range(2):
                yy = y0 + dy
                if yy < 0 or yy >= h:
                    continue
                wy = fy if dy else np.float32(1.0) - fy
                for dx in range(2):
                    xq = x0 + dx
                    if xq < 0 or xq >= w:
                        continue
                    weight = wy * (fx if dx else np.float32(1.0) - fx)
                    for ch in range(c):
                        columns[row, base + ch] += weight * x[yy, xq, ch]


_WORKQUEUE_LOCK = threading.Lock()


def _run(kernel, *arrays) -> None:
    """Call a parallel numba `kernel` on torch's thread count, serialised on numba's "workqueue" layer
    (the only one that refuses calls from several threads at once; before the first parallel call
    the layer is not chosen yet, so that call is serialised too)."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = None
    if layer in (None, "workqueue"):
        with _WORKQUEUE_LOCK:
            kernel(*arrays)
    else:
        kernel(*arrays)


def _weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(O, C, 3, 3) -> (9 C, O), rows in the im2col matrix's (tap, channel) order."""
    return weight.detach().permute(2, 3, 1, 0).reshape(9 * weight.shape[1], weight.shape[0])


def deform_conv3x3_cpu(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """3x3 deformable convolution (stride 1, padding 1, one offset group) of float32 CPU tensors, as
    torchvision's ``deform_conv2d(x, offset, weight, padding=1)``; a channels-last (N, O, H, W) result.
    Differentiable: with autograd on it goes through `DeformConv3x3CPU`."""
    if torch.is_grad_enabled() and (x.requires_grad or offset.requires_grad or weight.requires_grad):
        return DeformConv3x3CPU.apply(x, offset, weight)
    return _forward_in_bands(x, offset, weight)


def _forward_in_bands(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    out_channels = weight.shape[0]
    weights = _weight_matrix(weight).contiguous()
    out = torch.empty((n, h * w, out_channels), dtype=torch.float32)
    band = min(BAND_PIXELS, h * w)
    columns = torch.empty((band, 9 * c), dtype=torch.float32)
    for b in range(n):
        image = x[b].detach().permute(1, 2, 0).contiguous().numpy()  # views when channels-last
        offsets = offset[b].detach().permute(1, 2, 0).contiguous().numpy()
        for first in range(0, h * w, band):
            block = columns[: min(band, h * w - first)]
            _run(_fill_columns, image, offsets, first, block.numpy())
            torch.mm(block, weights, out=out[b, first:first + block.shape[0]])
    return out.view(n, h, w, out_channels).permute(0, 3, 1, 2)


@numba.njit(parallel=True, cache=True, nogil=True)
def _scatter_columns(x, offset, grad_columns, grad_x, grad_offset):  # pragma: no cover - compiled
    """The backward of `_fill_columns` for a batch: grad_columns (n, h*w, 9*c) into grad_x (n, h, w, c)
    and grad_offset (n, h, w, 18), both zeroed by the caller; one image per thread (an image's
    samples scatter anywhere in it, images never into each other)."""
    n, h, w, c = x.shape
    for b in numba.prange(n):
        for p in range(h * w):
            i = p // w
            j = p % w
            for k in range(9):
                y = i + (k // 3 - 1) + offset[b, i, j, 2 * k]
                xx = j + (k % 3 - 1) + offset[b, i, j, 2 * k + 1]
                if y <= -1.0 or y >= h or xx <= -1.0 or xx >= w:
                    continue
                y0 = math.floor(y)
                x0 = math.floor(xx)
                fy = np.float32(y - y0)
                fx = np.float32(xx - x0)
                d_y = np.float32(0.0)
                d_x = np.float32(0.0)
                for dy in range(2):
                    yy = y0 + dy
                    if yy < 0 or yy >= h:
                        continue
                    wy = fy if dy else np.float32(1.0) - fy
                    sy = np.float32(1.0) if dy else np.float32(-1.0)
                    for dx in range(2):
                        xq = x0 + dx
                        if xq < 0 or xq >= w:
                            continue
                        wx = fx if dx else np.float32(1.0) - fx
                        sx = np.float32(1.0) if dx else np.float32(-1.0)
                        weight = wy * wx
                        dot = np.float32(0.0)
                        for ch in range(c):
                            g = grad_columns[b, p, k * c + ch]
                            grad_x[b, yy, xq, ch] += weight * g
                            dot += g * x[b, yy, xq, ch]
                        d_y += sy * wx * dot
                        d_x += wy * sx * dot
                grad_offset[b, i, j, 2 * k] += d_y
                grad_offset[b, i, j, 2 * k + 1] += d_x


class DeformConv3x3CPU(torch.autograd.Function):
    """The same convolution with autograd, for CPU training: the forward keeps its im2col matrix (the
    weight gradient is its transpose times the output gradient), the backward scatters the column
    gradient through the same bilinear weights (`_scatter_columns`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        image = x.detach().permute(0, 2, 3, 1).contiguous()
        offsets = offset.detach().permute(0, 2, 3, 1).contiguous()
        columns = torch.empty((n, h * w, 9 * c), dtype=torch.float32)
        for b in range(n):
            _run(_fill_columns, image[b].numpy(), offsets[b].numpy(), 0, columns[b].numpy())
        out = columns.view(n * h * w, 9 * c) @ _weight_matrix(weight)
        ctx.save_for_backward(image, offsets, weight, columns)
        return out.view(n, h, w, weight.shape[0]).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        image, offsets, weight, columns = ctx.saved_tensors
        n, h, w, c = image.shape
        out_channels = weight.shape[0]
        grad_flat = grad.permute(0, 2, 3, 1).reshape(n * h * w, out_channels)
        grad_weight = (columns.view(n * h * w, 9 * c).t() @ grad_flat).view(3, 3, c, out_channels).permute(3, 2, 0, 1)
        grad_columns = (grad_flat @ _weight_matrix(weight).t()).view(n, h * w, 9 * c).contiguous()
        grad_x = torch.zeros((n, h, w, c), dtype=torch.float32)
        grad_offset = torch.zeros((n, h, w, 18), dtype=torch.float32)
        _run(_scatter_columns, image.numpy(), offsets.numpy(), grad_columns.numpy(), grad_x.numpy(), grad_offset.numpy())
        return grad_x.permute(0, 3, 1, 2), grad_offset.permute(0, 3, 1, 2), grad_weight.contiguous()
