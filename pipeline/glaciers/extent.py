"""The window of a block that holds its glacier pixels, so per-block work skips the ice-free rest.

Where ice is sparse (the real Tian Shan: 0.65 % of its bbox), most of a block around a glacier is
bare ground: distance transforms, ray marches and vectorisation over the whole block cost the
block, not the ice. Each caller grows the window by the reach of its own operation, so that its
answer inside the window is that of the whole block.
"""

from __future__ import annotations

import numpy as np

__all__ = ["true_extent"]


def true_extent(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice] | None:
    """(rows, cols) of the smallest window holding every True pixel of the (y, x) `mask`, grown by
    `margin` pixels on each side and clipped to the array; None where `mask` holds no True pixel."""
    mask = np.asarray(mask, bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return (slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, mask.shape[0])),
            slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + 1 + margin, mask.shape[1])))
