"""The forward holds no more than it needs: what sets a worker's memory is its forward's peak.

Measured on the shipped Sentinel-2 U-Net, one 1,216 px window on one CPU thread (the process's
peak RSS over the call): 617 B per input pixel before these two rules, 500 with the skips let go,
349 with the inputs' intermediates let go too (docs/scaling.md).
"""

from __future__ import annotations

import tracemalloc
import weakref

import numpy as np
import torch

from pipeline.model.dunet import UNet
from pipeline.model.inputs import InputRecipe
from pipeline.model.predictor import TorchPredictor


def test_each_skip_is_let_go_once_joined():
    """By the time the full-resolution decoder stage runs, no encoder output is alive: each went
    into its level's join and nothing else holds it (the finest one was 16 x 4 B a pixel)."""
    model = UNet(6, base=4).for_inference()
    outputs: list[weakref.ref] = []
    alive_at_last_stage: list[int] = []
    for stage in model.encoder:
        stage.register_forward_hook(lambda _m, _i, out: outputs.append(weakref.ref(out)))
    model.decoder[-1].register_forward_pre_hook(
        lambda _m, _i: alive_at_last_stage.append(sum(ref() is not None for ref in outputs))
    )
    with torch.inference_mode():
        logits = model(torch.rand(1, 6, 64, 64))
    assert logits.shape == (1, 1, 64, 64)
    assert len(outputs) == len(model.encoder) == 4
    assert alive_at_last_stage == [0]


def test_the_built_inputs_are_let_go_before_the_forward():
    """When the network starts, the numpy planes built for it (and their stack) are gone: only the
    padded batch (torch's) and the valid mask remain. Counted with tracemalloc, which sees numpy's
    buffers but not torch's: the old path still held the built planes and their stack, 2 x the stack."""
    recipe = InputRecipe(mean=(0.3,) * 6, std=(0.2,) * 6)
    predictor = TorchPredictor(UNet(6, base=4), recipe, device="cpu")
    tile = np.random.default_rng(0).uniform(0, 1, (6, 256, 256)).astype(np.float32)
    stack_bytes = tile.nbytes  # 6 channels in float32: one built stack
    held: list[int] = []
    predictor.model.register_forward_pre_hook(lambda _m, _i: held.append(tracemalloc.get_traced_memory()[0] - start))
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        probability = predictor.predict(tile)
    finally:
        tracemalloc.stop()
    assert probability.shape == (256, 256)
    assert len(held) == 1
    assert held[0] < 0.2 * stack_bytes, f"{held[0]} B of numpy buffers alive at the forward (one stack: {stack_bytes} B)"
