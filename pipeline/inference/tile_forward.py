"""The forward pass one Dask task runs on a piece of a tile (`predict_piece`) or a whole tile (`predict_block`), and the 16-px lattice.

Kept apart from `pipeline.inference.region`, which builds the graph and imports torch: a worker
unpickles each task in its event loop, so a task whose function lives in a torch-importing module
imported torch and the networks there (2-4 s on a fresh worker) while the worker could neither
start tasks nor answer its neighbours' requests for data. Here unpickling imports numpy and numba
(0.2 s); torch and the network load in the task's own thread, on the first call (`cached_predictor`).
numba is imported here, by the event loop, because a D-UNet's CPU kernel would otherwise import it
in the task's thread: two threads importing numba at once let one see it half initialised (a worker
was lost that way, docs/scaling.md), and the event loop imports it for other tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numba  # noqa: F401 - imported by the event loop, never first by a task's thread (module doc)
import numpy as np

from pipeline.model.halo import SIZE_MULTIPLE


def round_up(n: int, multiple: int = SIZE_MULTIPLE) -> int:
    """`n` rounded up to a multiple of `multiple` (default: the network's 16 px size lattice)."""
    return -(-int(n) // multiple) * multiple


def _window_edges(size: int, halo: int, window: int) -> list[int]:
    """Cut points of a block side into cores of at most ~`window` px on the 16-px lattice.

    The block's own halo (`halo` px each side) joins the first and last core; the interior is
    split evenly, so a 2048 px chunk with window 1024 runs as two 1024 px cores, not 1024 + 1024 + halo.
    """
    interior = size - 2 * halo
    n = max(1, -(-interior // window))
    step = round_up(-(-interior // n))
    return [0, *(halo + k * step for k in range(1, n) if halo + k * step < size - halo), size]


def predict_block(
    block: np.ndarray, *, path: str, weights_sha256: str, device: str, half: bool, n_bands: int, halo: int, window: int | None,
    mirror: bool = False,
) -> np.ndarray:
    """(year, channel, y, x) tile (reflectance bands then terrain) -> (year, y, x) probability.

    The network sees at most `window` px (plus `halo` of context each side) at once: a
    network's activations grow with its input (the D-UNet's CPU forward takes ~2 kB per pixel),
    so this keeps a task's memory bounded whatever the chunk size. Each window's core is kept,
    its context cropped: by the halo's definition the seams stay invisible, as between chunks.
    """
    height, width = block.shape[-2:]
    reflectance, terrain = block[:, :n_bands], [block[0, c] for c in range(n_bands, block.shape[1])]
    model = {"path": path, "weights_sha256": weights_sha256, "device": device, "half": half, "mirror": mirror}
    if window is None or max(height, width) <= window + 2 * halo:
        return _predict_whole(reflectance, terrain, **model)
    out = np.empty((block.shape[0], height, width), np.float32)
    ys, xs = _window_edges(height, halo, window), _window_edges(width, halo, window)
    for y0, y1 in pairwise(ys):
        for x0, x1 in pairwise(xs):
            rows, cols = slice(max(0, y0 - halo), min(height, y1 + halo)), slice(max(0, x0 - halo), min(width, x1 + halo))
            part = _predict_whole(reflectance[..., rows, cols], [t[rows, cols] for t in terrain], **model)
            out[:, y0:y1, x0:x1] = part[:, y0 - rows.start : y1 - rows.start, x0 - cols.start : x1 - cols.start]
    return out


class Mosaic:
    """A tile's block held as the pieces it was read in ((..., y, x) arrays side by side; `starts`: each
    row and column of pieces' first block pixel): `take` copies out only a window of it. A forward
    pass over a few hundred pixels near a lone glacier copies those, not the whole block (the pieces
    joined into 2,240 px Sentinel-2 blocks, 120 MB a year, took a fifth of a sparse region's thread time)."""

    def __init__(self, parts: list[list[np.ndarray]], starts: Sequence[Sequence[int]]):
        self.parts = parts
        sizes = [line[0].shape[-2] for line in parts], [part.shape[-1] for part in parts[0]]
        self.spans = tuple([(int(s), int(s) + n) for s, n in zip(starts[axis], sizes[axis], strict=True)] for axis in (0, 1))
        self.shape = (*parts[0][0].shape[:-2], self.spans[0][-1][1], self.spans[1][-1][1])
        self.dtype = parts[0][0].dtype

    def take(self, rows: slice, cols: slice) -> np.ndarray:
        """The block's `rows` x `cols` (steps of 1): a view where one piece holds them, else a copy."""
        pieces = [(i, j) for i, r in enumerate(self.spans[0]) if r[0] < rows.stop and r[1] > rows.start
                  for j, c in enumerate(self.spans[1]) if c[0] < cols.stop and c[1] > cols.start]
        if len(pieces) == 1:
            (i, j), = pieces
            (r0, _), (c0, _) = self.spans[0][i], self.spans[1][j]
            return self.parts[i][j][..., rows.start - r0 : rows.stop - r0, cols.start - c0 : cols.stop - c0]
        out = np.empty((*self.shape[:-2], rows.stop - rows.start, cols.stop - cols.start), self.dtype)
        for i, j in pieces:
            (r0, r1), (c0, c1) = self.spans[0][i], self.spans[1][j]
            lo_r, hi_r, lo_c, hi_c = max(r0, rows.start), min(r1, rows.stop), max(c0, cols.start), min(c1, cols.stop)
            out[..., lo_r - rows.start : hi_r - rows.start, lo_c - cols.start : hi_c - cols.start] = \
                self.parts[i][j][..., lo_r - r0 : hi_r - r0, lo_c - c0 : hi_c - c0]
        return out


def predict_piece(
    parts: list[list[np.ndarray]], starts: Sequence[Sequence[int]], terrain: list[np.ndarray], rows: slice, cols: slice,
    keep_rows: slice, keep_cols: slice, read_parts: list[list[np.ndarray]] | None = None,
    read_starts: Sequence[Sequence[int]] | None = None, *, path: str, weights_sha256: str, device: str, half: bool, halo: int = 0,
    mirror: bool = False,
) -> np.ndarray:
    """One forward pass over `rows` x `cols` of a tile's block - its (year, band, y, x) reflectance, held
    as the pieces of it that `rows` x `cols` lie in (`parts`, their first rows and columns in the block
    `starts`: a `Mosaic`), and its (y, x) terrain planes in the recipe's order (a piece and its context) -
    the piece (`keep_rows` x `keep_cols` of that output) kept: (year, y, x) probability. The Dask task:
    it waits for those pieces alone, never for the whole block joined, and never stacks the block's
    channels into one array: only the network's own inputs for this piece are built.

    `read_parts`, `read_starts` (the block's (y, x) bool likewise, `yearly_cube`'s `read_haloed`): the
    pixels the run infers, 0 elsewhere. The pass then runs over their bounding box grown by `halo`
    (their context; its top-left on the 16-px lattice, as the block's own), not at all where the piece
    has none: a tile's ground far from every glacier costs no forward pass.
    """
    model = {"path": path, "weights_sha256": weights_sha256, "device": device, "half": half, "mirror": mirror}
    reflectance = Mosaic(parts, starts)
    window = None if read_parts is None else Mosaic(read_parts, read_starts).take(rows, cols)
    if window is None or window.all():
        part = _predict_whole(reflectance.take(rows, cols), [t[rows, cols] for t in terrain], **model)
        return np.ascontiguousarray(part[:, keep_rows, keep_cols])
    out = np.zeros((reflectance.shape[0], *window.shape), np.float32)
    kept = window[keep_rows, keep_cols]
    if kept.any():
        lines = np.flatnonzero(kept.any(axis=1)) + keep_rows.start
        columns = np.flatnonzero(kept.any(axis=0)) + keep_cols.start
        r0, c0 = (max(0, int(v[0]) - halo) // SIZE_MULTIPLE * SIZE_MULTIPLE for v in (lines, columns))
        r1, c1 = min(window.shape[0], int(lines[-1]) + 1 + halo), min(window.shape[1], int(columns[-1]) + 1 + halo)
        box = slice(rows.start + r0, rows.start + r1), slice(cols.start + c0, cols.start + c1)
        out[:, r0:r1, c0:c1] = _predict_whole(reflectance.take(*box), [t[box] for t in terrain], **model)
        out[:, ~window] = 0.0
    return np.ascontiguousarray(out[:, keep_rows, keep_cols])


def _predict_whole(
    reflectance: np.ndarray, terrain: list[np.ndarray], *, path: str, weights_sha256: str, device: str, half: bool,
    mirror: bool = False,
) -> np.ndarray:
    """One forward pass over a tile's (year, band, y, x) reflectance and its terrain planes (the recipe's order);
    `mirror`: north-south, for weights trained in the other hemisphere (`TorchPredictor`)."""
    from pipeline.inference.predictor_cache import cached_predictor  # torch: in this task's thread (module doc)

    predictor = cached_predictor(path, weights_sha256, device, half, mirror)
    named = dict(zip(predictor.recipe.terrain_sources, terrain, strict=True))
    # Several years of one tile go through as one batch, sharing the terrain.
    return predictor.predict_batch(list(reflectance), named)
