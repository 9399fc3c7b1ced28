"""The 3x3 deformable convolution for CPU inference: one compiled pass per row band, then a GEMM.

`deform_conv3x3_by_sampling` (grid_sample + einsum) is what training differentiates; on CPU
grid_sample was 65 % and the einsum 20 % of the D-UNet's forward (0.12 Mpx/s, base 16, 512 px,
2 threads). Here numba fills the im2col matrix straight from the channels-last input (per pixel
and tap one set of bilinear weights, then the tap's channels as one contiguous run), band by
band so the matrix stays ~20 MB, and torch multiplies it by the weights. Same parameters and
result (to float rounding) as torchvision's ``deform_conv2d`` with stride 1, padding 1, one
offset group and no mask: points outside the image contribute zero.

Threads: numba's parallel loop takes ``torch.get_num_threads()`` threads, so a worker's thread
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


def deform_conv3x3_cpu(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Inference-only (no autograd) 3x3 deformable convolution of float32 CPU tensors; returns a
    channels-last (N, O, H, W) tensor."""
    n, c, h, w = x.shape
    out_channels = weight.shape[0]
    weights = weight.detach().permute(2, 3, 1, 0).reshape(9 * c, out_channels).contiguous()
    out = torch.empty((n, h * w, out_channels), dtype=torch.float32)
    band = min(BAND_PIXELS, h * w)
    columns = torch.empty((band, 9 * c), dtype=torch.float32)
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    for b in range(n):
        image = x[b].detach().permute(1, 2, 0).contiguous().numpy()  # views when channels-last
        offsets = offset[b].detach().permute(1, 2, 0).contiguous().numpy()
        for first in range(0, h * w, band):
            block = columns[: min(band, h * w - first)]
            _fill(image, offsets, first, block.numpy())
            torch.mm(block, weights, out=out[b, first:first + block.shape[0]])
    return out.view(n, h, w, out_channels).permute(0, 3, 1, 2)


def _fill(image, offsets, first, block) -> None:
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel call yet: the layer is chosen by this one
        layer = None
    if layer in (None, "workqueue"):
        with _WORKQUEUE_LOCK:
            _fill_columns(image, offsets, first, block)
    else:
        _fill_columns(image, offsets, first, block)
