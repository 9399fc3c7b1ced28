"""Binary focal loss (Lin et al. 2017), the paper's training loss.

Focal loss down-weights pixels the model already gets right (bright clean ice, dark valley
floor) so training effort goes to the hard ones: margins, shadowed ice, debris-covered tongues.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of -alpha_t (1 - p_t)^gamma log(p_t) over valid pixels; targets are 0/1.

    Written with log-sigmoid of the signed logit, log p_t = logsigmoid(s) and
    log(1 - p_t) = logsigmoid(-s) with s = logit * (2 target - 1), so it stays finite for
    logits of any size (no sigmoid that rounds to exactly 0 or 1). alpha weights glacier
    pixels, 1 - alpha non-glacier pixels.
    """
    logits = logits.float()
    target = target.to(logits.dtype).reshape(logits.shape)
    signed = logits * (2.0 * target - 1.0)
    alpha_t = alpha * target + (1.0 - alpha) * (1.0 - target)
    loss = -alpha_t * torch.exp(gamma * F.logsigmoid(-signed)) * F.logsigmoid(signed)
    if valid is None:
        return loss.mean()
    weight = valid.to(loss.dtype).reshape(loss.shape)
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)
