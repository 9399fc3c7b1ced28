"""Focal loss against values worked out by hand from -alpha_t (1 - p_t)^gamma log p_t."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.model.losses import focal_loss


def hand_focal(logit: float, target: int, alpha: float, gamma: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    p_t = p if target == 1 else 1 - p
    alpha_t = alpha if target == 1 else 1 - alpha
    return -alpha_t * (1 - p_t) ** gamma * math.log(p_t)


@pytest.mark.parametrize(
    "logit, target, expected",
    [
        (0.0, 1, 0.25 * 0.5**2 * math.log(2)),  # p = 0.5: 0.0433217
        (2.0, 0, 1.2375586),  # confident and wrong: 0.75 * 0.8808^2 * 2.1269
        (3.0, 1, 2.732083e-05),  # confident and right: almost nothing
        (-1.5, 0, 0.75 * 0.1824255**2 * 0.2014133),
    ],
)
def test_single_pixel_matches_hand_value(logit, target, expected):
    loss = focal_loss(torch.tensor([logit]), torch.tensor([target]), alpha=0.25, gamma=2.0)
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    assert expected == pytest.approx(hand_focal(logit, target, 0.25, 2.0), rel=1e-4)


def test_mean_over_pixels_and_gamma_zero_is_weighted_cross_entropy():
    logits, targets = torch.tensor([0.5, -2.0, 4.0]), torch.tensor([1, 1, 0])
    expected = sum(hand_focal(z, t, 0.5, 0.0) for z, t in zip(logits.tolist(), targets.tolist())) / 3
    assert focal_loss(logits, targets, alpha=0.5, gamma=0.0).item() == pytest.approx(expected, rel=1e-5)


def test_huge_logits_stay_finite():
    loss = focal_loss(torch.tensor([100.0, -100.0, 100.0]), torch.tensor([0, 0, 1]), alpha=0.25, gamma=2.0)
    assert loss.item() == pytest.approx(0.75 * 100.0 / 3, rel=1e-5)


def test_invalid_pixels_do_not_count():
    logits, targets = torch.tensor([2.0, 0.0]), torch.tensor([0, 1])
    loss = focal_loss(logits, targets, valid=torch.tensor([False, True]))
    assert loss.item() == pytest.approx(hand_focal(0.0, 1, 0.25, 2.0), rel=1e-5)
