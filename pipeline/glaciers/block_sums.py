"""One block's per-glacier sums for `pipeline.glaciers.statistics`: one pass over its glacier pixels.

Only the pixels inside an inventory outline (glacier id != 0) can count anywhere, and a
region is mostly ice-free, so a block is reduced by visiting just those. Each pixel's compact
glacier index is worked out once per spatial block (`compact_ids`), its elevation band, aspect
sector and aspect vector once for all the block's years, and a compiled loop adds every
statistic of every year into the block's vector in one sweep. The sums are those a dozen
`np.bincount` calls per year gave before (the same float64 additions in the same raster order;
numba's sin/cos gave numpy's values on 5.4 M aspects here), so the tables are the same to the
last bit, ~8x faster on the bench's 7 years."""

from __future__ import annotations

import numba
import numpy as np

from catalog.aspect import ASPECT_SECTORS
from pipeline.store.encoding import NDSI_BIT, RATIO_BIT
from pipeline.store.layout import INDICES_NOT_READ

N_SECTORS = len(ASPECT_SECTORS)


class Layout:
    """Offsets of each statistic inside the per-block vector (k = number of glacier slots; slot 0 = none)."""

    NAMES = ("count", "edges", "z_sum", "z_n", "sin", "cos", "sector", "band", "outline_n", "unobserved", "miss",
             "cmp_n", "cmp_model", "cmp_ndsi", "cmp_ratio", "xor_ndsi", "or_ndsi", "xor_ratio", "or_ratio")

    def __init__(self, k: int, n_bands: int):
        self.k, self.n_bands = k, n_bands
        self.slices, start = {}, 0
        for name in self.NAMES:
            size = k * N_SECTORS if name == "sector" else k * n_bands if name == "band" else k
            self.slices[name] = slice(start, start + size)
            start += size
        self.size = start

    def starts(self) -> np.ndarray:
        return np.array([self.slices[name].start for name in self.NAMES], np.int64)


def ids_and_elevation_range(gid: np.ndarray, dem: np.ndarray) -> tuple[np.ndarray, np.float32, np.float32]:
    """The sorted non-zero glacier ids of an in-memory raster and the DEM's range over positive ids
    (float32, NaN where no such pixel has elevation): one compiled pass instead of four numpy ones."""
    ids, zmin, zmax, found = _ids_and_range(np.asarray(gid), np.asarray(dem, np.float32))
    return ids, (np.float32(zmin) if found else np.float32(np.nan)), (np.float32(zmax) if found else np.float32(np.nan))


@numba.njit(nogil=True, cache=True)
def _ids_and_range(gid, dem):  # pragma: no cover - compiled
    zmin, zmax, found, n = np.float32(np.inf), np.float32(-np.inf), False, 0
    for i in range(gid.shape[0]):
        for j in range(gid.shape[1]):
            g = gid[i, j]
            if g != 0:
                n += 1
                z = dem[i, j]
                if g > 0 and np.isfinite(z):
                    zmin, zmax, found = min(zmin, z), max(zmax, z), True
    nonzero = np.empty(n, gid.dtype)
    n = 0
    for i in range(gid.shape[0]):
        for j in range(gid.shape[1]):
            if gid[i, j] != 0:
                nonzero[n] = gid[i, j]
                n += 1
    return np.unique(nonzero), zmin, zmax, found


def compact_ids(gid: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Each pixel's compact glacier index: 1 + its id's position in the sorted ``ids``, 0 for none.

    Worked out once per spatial block (every year's task shares it), so that the sweep indexes
    the sums directly, whatever the inventory's ids look like (RGI-like sparse ids cost nothing).
    """
    out = np.zeros(gid.shape, np.int32)
    _compact(gid, np.asarray(ids, gid.dtype), out)
    return out


@numba.njit(nogil=True, cache=True)
def _compact(gid, ids, out):  # pragma: no cover - compiled
    for i in range(gid.shape[0]):
        for j in range(gid.shape[1]):  # most pixels are no glacier: search only the others
            g = gid[i, j]
            if g != 0:
                pos = np.searchsorted(ids, g)
                if pos < ids.size and ids[pos] == g:
                    out[i, j] = pos + 1


def reduce_block(mapped_ov: np.ndarray, prob: np.ndarray, cid_ov: np.ndarray, dem: np.ndarray, aspect: np.ndarray,
                 unobserved: np.ndarray, indices: np.ndarray, *, layout: Layout, band_origin_m: float, band_m: float,
                 with_prob: bool) -> np.ndarray:
    """Per-glacier sums of one block -> (years, 1, 1, n_bins) float64.

    ``mapped_ov`` (years, y+2, x+2) bool and ``cid_ov`` (y+2, x+2) compact glacier indices
    (`compact_ids`) carry a one-pixel halo (the neighbours of the edge pixels; outside the
    raster: not mapped, 0). ``dem`` and ``aspect`` (y, x) float32; ``unobserved`` (years, y, x)
    bool; ``indices`` (years, y, x) the store's index bits; ``prob`` (years, y, x) integer
    probabilities 0-255 when ``with_prob`` (each pixel's chance of being misclassified is 1 - p
    where mapped, p where not), else unused.
    """
    out = np.zeros((mapped_ov.shape[0], 1, 1, layout.size), np.float64)
    _accumulate(out.reshape(out.shape[0], layout.size), mapped_ov, prob, with_prob, cid_ov, dem, aspect, unobserved, indices,
                np.float64(band_origin_m), np.float64(band_m), layout.n_bands, N_SECTORS, layout.starts())
    return out


@numba.njit(nogil=True, cache=True)
def _accumulate(out, mapped_ov, prob, with_prob, cid_ov, dem, aspect, unobserved, indices, band_origin, band_m,
                n_bands, n_sectors, at):  # pragma: no cover - compiled
    # `at`: the start of each statistic in Layout.NAMES order. Each statistic is computed as the
    # numpy version of this module computed it (float64 from the float32 inputs; the sector as
    # catalog.aspect.aspect_class; radians, sin and cos as numpy's), and added in raster order.
    count, edges, z_sum, z_n, s_sin, s_cos, s_sector, s_band, outline_n, unobs = at[0], at[1], at[2], at[3], at[4], \
        at[5], at[6], at[7], at[8], at[9]
    miss, cmp_n, cmp_model, cmp_ndsi, cmp_ratio, xor_ndsi, or_ndsi, xor_ratio, or_ratio = at[10], at[11], at[12], \
        at[13], at[14], at[15], at[16], at[17], at[18]
    one, scale = np.float32(1.0), np.float32(255.0)
    not_read, ndsi_bit, ratio_bit = INDICES_NOT_READ, NDSI_BIT, RATIO_BIT
    ny, nx = dem.shape
    for r in range(ny):
        for c in range(nx):
            k = cid_ov[r + 1, c + 1]
            if k == 0:
                continue
            # what does not change with the year, once per pixel
            z = np.float64(dem[r, c])
            z_ok = np.isfinite(z)
            band = np.int64(-1)
            if z_ok:
                b = np.floor((z - band_origin) / band_m)
                band = np.int64(b) if 0 <= b < n_bands else np.int64(-1)
            a = np.float64(aspect[r, c])
            a_ok = np.isfinite(a)
            sector, sin_a, cos_a = np.int64(-1), 0.0, 0.0
            if a_ok:
                sector = np.int64(np.floor(((a + 22.5) % 360.0) / 45.0) % n_sectors)  # catalog.aspect.aspect_class
                rad = np.radians(a)
                sin_a, cos_a = np.sin(rad), np.cos(rad)
            for t in range(mapped_ov.shape[0]):  # each year's sums are their own row: raster order within it
                o = out[t]
                mapped = mapped_ov[t, r + 1, c + 1]
                o[outline_n + k] += 1.0
                if mapped:
                    o[count + k] += 1.0
                    # exposed edges: 4-connected neighbours that are not this glacier's mapped pixels
                    e = 0
                    e += not (mapped_ov[t, r, c + 1] and cid_ov[r, c + 1] == k)
                    e += not (mapped_ov[t, r + 2, c + 1] and cid_ov[r + 2, c + 1] == k)
                    e += not (mapped_ov[t, r + 1, c] and cid_ov[r + 1, c] == k)
                    e += not (mapped_ov[t, r + 1, c + 2] and cid_ov[r + 1, c + 2] == k)
                    o[edges + k] += e
                    if z_ok:
                        o[z_sum + k] += z
                        o[z_n + k] += 1.0
                        if band >= 0:
                            o[s_band + k * n_bands + band] += 1.0
                    if a_ok:
                        o[s_sin + k] += sin_a
                        o[s_cos + k] += cos_a
                        o[s_sector + k * n_sectors + sector] += 1.0
                hidden = unobserved[t, r, c]
                o[unobs + k] += 1.0 if hidden else 0.0
                if with_prob:
                    p = np.float32(prob[t, r, c]) / scale
                    o[miss + k] += np.float64(one - p if mapped else p)
                bits = indices[t, r, c]
                if not hidden and bits != not_read:  # compared: observed, and its indices were read
                    ndsi, ratio = (bits & ndsi_bit) > 0, (bits & ratio_bit) > 0
                    o[cmp_n + k] += 1.0
                    o[cmp_model + k] += mapped
                    o[cmp_ndsi + k] += ndsi
                    o[cmp_ratio + k] += ratio
                    o[xor_ndsi + k] += mapped != ndsi
                    o[or_ndsi + k] += mapped or ndsi
                    o[xor_ratio + k] += mapped != ratio
                    o[or_ratio + k] += mapped or ratio
