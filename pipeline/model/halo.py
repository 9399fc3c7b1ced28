"""The tiling the networks impose on chunked inference: the 16-px size lattice, and how much
context a tile borrows from its neighbours, per architecture.

Kept apart from the network code (no torch import) so that planning a run, and unpickling a
tile's task on a worker (`pipeline.inference.tile_forward`), can read it.
"""

from __future__ import annotations

LEVELS = 4
"""Encoder/decoder levels of the networks (`pipeline.model.dunet`): four 2x2 poolings."""
SIZE_MULTIPLE = 2**LEVELS
"""Inputs must have H and W divisible by this, and tiles must start on this lattice: a U-Net is
shift-equivariant only for shifts that are multiples of it."""

HALO_BY_ARCHITECTURE: dict[str, int] = {"unet": 96, "dunet": 336}
"""Pixels of context each tile borrows from its neighbours, by architecture (measured, not guessed).

The smallest halo at which the chunked mosaic equals the whole-image prediction within 1/255
(tests/test_inference.py::test_chunk_seams_are_invisible; variance-preserving random weights, base 4,
tiles of 128-192 px): U-Net 96 px (80 px still leaves 6/255: the plain U-Net's receptive field
is about 2 x 92 px, beyond it the result is exact). D-UNet: the DAC bridge's dilated convs at 1/16
resolution and the input-dependent offsets widen the field, and the figure depends on the weights:
240 px for one random draw (208 px left 5/255), 336 px for the test's draw (288 px left 2.7/255);
336 is the default. Trained weights need less, and their card records it (`ModelCard.halo_px`,
which inference prefers): the shipped Sentinel-2 D-UNet on the 2021 composite, 256-px tiles,
96 px leaves 0.30/255 and 128 px 0.008/255, so its card says 128; the shipped Landsat D-UNet
still leaves 1.2/255 at 128 px (30 m pixels: the same ground distance is fewer pixels), so it
keeps the default. The trained
U-Net (base 16, /tmp/train_unet16) on the default area's 2016 composite, 512-px tiles
(tests/bench/bench_inference.py): 64 px leaves 1.34/255, 80 px 0.09/255, 96 px is exact.
"""
DEFAULT_HALO = max(HALO_BY_ARCHITECTURE.values())
"""For weights of an architecture not listed above."""
