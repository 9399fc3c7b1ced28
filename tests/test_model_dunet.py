"""D-UNet and U-Net: shapes, the zero-offset start, the DAC receptive field, bf16 autocast, folded norms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import DeformConv2d, deform_conv2d

from pipeline.model.deform_cpu import deform_conv3x3_cpu
from pipeline.model.dunet import ConvBlock, DACBlock, DeformableBlock, DUNet, UNet
from pipeline.model.inputs import InputRecipe
from pipeline.model.predictor import TorchPredictor


@pytest.mark.parametrize("cls", [DUNet, UNet])
@pytest.mark.parametrize("height, width", [(48, 80), (64, 64)])
def test_one_logit_per_pixel_for_multiples_of_16(cls, height, width):
    model = cls(in_channels=7, base=4)
    assert model(torch.randn(2, 7, height, width)).shape == (2, 1, height, width)


def test_size_not_multiple_of_16_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="multiples of 16"):
        UNet(6, 4)(torch.randn(1, 6, 40, 48))


def test_widths_follow_the_design():
    model = DUNet(6, base=32)
    assert [stage[1].deform.out_channels for stage in model.encoder] == [32, 64, 128, 256]
    assert model.bottom[1].deform.out_channels == 512


def test_unet_is_the_same_network_without_deformable_convs_or_dac():
    unet, dunet = UNet(6, 4), DUNet(6, 4)
    assert not any(isinstance(m, (DeformConv2d, DACBlock)) for m in unet.modules())
    assert sum(isinstance(m, DeformableBlock) for m in dunet.modules()) == 18  # 2 per stage, 9 stages
    assert isinstance(dunet.bridge, DACBlock)


def test_deformable_conv_with_zero_offsets_is_a_plain_convolution():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16, 16)
    deform = DeformConv2d(5, 3, 3, padding=1, bias=True)
    offsets = torch.zeros(2, 18, 16, 16)
    expected = F.conv2d(x, deform.weight, deform.bias, padding=1)
    torch.testing.assert_close(deform(x, offsets), expected, rtol=1e-5, atol=1e-5)


def test_fresh_deformable_block_equals_a_conv_block_with_the_same_weights():
    torch.manual_seed(0)
    deformable, plain = DeformableBlock(5, 3).eval(), ConvBlock(5, 3).eval()
    plain[0].weight.data.copy_(deformable.deform.weight.data)
    x = torch.randn(2, 5, 16, 16)
    torch.testing.assert_close(deformable(x), plain(x), rtol=1e-5, atol=1e-5)


def test_dac_sees_19_pixels_across():
    torch.manual_seed(0)
    dac = DACBlock(8)
    x = torch.randn(1, 8, 41, 41, requires_grad=True)
    dac(x)[0, :, 20, 20].sum().backward()
    reached = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero()
    assert reached.min().item() == 20 - 9 and reached.max().item() == 20 + 9


def test_bf16_autocast_runs_with_deformable_ops_in_fp32():
    model = DUNet(6, 4).eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(1, 6, 32, 32))
    assert torch.isfinite(logits.float()).all()
    assert model.encoder[0][0].deform.weight.dtype == torch.float32


def test_cpu_kernel_matches_torchvision_values_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 12, 10, requires_grad=True)
    weight = torch.randn(3, 4, 3, 3, requires_grad=True)
    offset = (1.5 * torch.randn(2, 18, 12, 10)).requires_grad_()  # reaches past the border too
    ours = deform_conv3x3_cpu(x, offset, weight)
    ref = deform_conv2d(x, offset, weight, padding=1)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    grads = torch.autograd.grad(ours.square().sum(), (x, weight, offset))
    ref_grads = torch.autograd.grad(ref.square().sum(), (x, weight, offset))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("channels_last", [False, True])
def test_cpu_inference_kernel_matches_torchvision_at_the_border_and_between_bands(channels_last, monkeypatch):
    """The compiled im2col path (inference on CPU) against torchvision's kernel: offsets reaching
    past every border, a batch of two, bands that end mid-row."""
    from pipeline.model import deform_cpu

    monkeypatch.setattr(deform_cpu, "BAND_PIXELS", 37)
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 5, 12, 10).contiguous(memory_format=layout)
    weight = torch.randn(7, 5, 3, 3)
    offset = (3.0 * torch.randn(2, 18, 12, 10)).contiguous(memory_format=layout)
    offset[0, :, 0, 0] = torch.tensor([-1.0, 0.0] * 9)  # taps landing exactly on the border line y = -1 (zero)
    with torch.inference_mode():
        ours = deform_cpu.deform_conv3x3_cpu(x, offset, weight)
        ref = deform_conv2d(x, offset, weight, padding=1)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_dunet_inference_on_cpu_equals_its_training_path():
    """Eval without autograd runs the banded kernel, with autograd the one that keeps its columns: the same logits."""
    torch.manual_seed(0)
    model = DUNet(6, 4).eval()
    for block in model.modules():
        if isinstance(block, DeformableBlock):
            torch.nn.init.normal_(block.offset.weight, std=0.3)  # bent grids, not the fresh regular one
    x = torch.randn(1, 6, 48, 32)
    with torch.inference_mode():
        fast = model(x)
    slow = model(x.clone().requires_grad_())
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-4, atol=1e-4)


def _trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """Norms with statistics and affine parameters far from their initial ones, offsets that bend the grid."""
    torch.manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.05, 3.0)
            module.weight.data.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.5, 0.5)
        if isinstance(module, DeformableBlock):
            torch.nn.init.normal_(module.offset.weight, std=0.05)
    return model.train()


@pytest.mark.parametrize("cls", [UNet, DUNet])
def test_folded_norms_give_the_same_logits_and_leave_the_model_as_it_was(cls):
    model = _trained_looking(cls(in_channels=6, base=4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = model.for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) and not folded.training
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    x = torch.randn(2, 6, 48, 64)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model.eval()(x), rtol=1e-4, atol=1e-4)


def test_a_predictor_runs_the_folded_network_without_touching_the_one_it_was_given():
    model = _trained_looking(DUNet(in_channels=6, base=4))
    recipe = InputRecipe(mean=(0.3,) * 6, std=(0.2,) * 6)
    predictor = TorchPredictor(model, recipe, device="cpu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor.model.modules())
    assert model.training and sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 18
    tile = np.random.default_rng(0).uniform(0, 1, (6, 32, 48)).astype(np.float32)
    inputs, _ = recipe.build_inputs(tile, None)
    with torch.inference_mode():
        expected = torch.sigmoid(model.eval()(torch.from_numpy(inputs)[None]))[0, 0].numpy()
    np.testing.assert_allclose(predictor.predict(tile), expected, atol=1e-5)
