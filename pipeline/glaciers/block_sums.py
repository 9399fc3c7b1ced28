"""One block's per-glacier sums for `pipeline.glaciers.statistics`: one pass over its glacier pixels.

Only the pixels inside an inventory outline (glacier id != 0) can count anywhere, and a
region is mostly ice-free, so a block is reduced by visiting just those. Each pixel's compact
glacier index is worked out once per spatial block (`compact_ids`). A compiled loop sweeps each
row in runs of one glacier's pixels: their elevation band, aspect sector and aspect vector once
for all the block's years, then each year's run summed in local variables and added to the
block's vector once (adding every pixel-year to the vector was store-bound: 2.2x slower on the
x4 area's largest block). The sums are those a dozen `np.bincount` calls per year gave (float64
from the float32 inputs; numba's sin/cos gave numpy's values on 5.4 M aspects here): counts and
elevation sums are exact (float32 elevations add exactly in float64); the sums of aspect
vectors and of misclassification chances may differ in the last bits with the blocking and runs."""

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
    # pass 1: the DEM's range and the ids' span; pass 2 marks each id seen in a bitmap over that
    # span (an inventory's ids are dense enough), or collects and sorts them where the span is huge
    zmin, zmax, found, n = np.float32(np.inf), np.float32(-np.inf), False, 0
    lo, hi = np.int64(np.iinfo(np.int64).max), np.int64(np.iinfo(np.int64).min)
    for i in range(gid.shape[0]):
        for j in range(gid.shape[1]):
            g = gid[i, j]
            if g != 0:
                n += 1
                lo, hi = min(lo, np.int64(g)), max(hi, np.int64(g))
                z = dem[i, j]
                if g > 0 and np.isfinite(z):
                    zmin, zmax, found = min(zmin, z), max(zmax, z), True
    if n == 0:
        return np.empty(0, gid.dtype), zmin, zmax, found
    if hi - lo < 4 * gid.size + 1024:
        seen = np.zeros(hi - lo + 1, np.bool_)
        for i in range(gid.shape[0]):
            for j in range(gid.shape[1]):
                if gid[i, j] != 0:
                    seen[gid[i, j] - lo] = True
        return (np.nonzero(seen)[0] + lo).astype(gid.dtype), zmin, zmax, found
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
    last, index = gid.dtype.type(0), 0  # a pixel's neighbour along the row is mostly the same glacier
    for i in range(gid.shape[0]):
        for j in range(gid.shape[1]):  # most pixels are no glacier: search only the others
            g = gid[i, j]
            if g != 0:
                if g != last:
                    pos = np.searchsorted(ids, g)
                    last, index = g, (pos + 1 if pos < ids.size and ids[pos] == g else 0)
                out[i, j] = index


def reduce_block(part: np.ndarray, values: np.ndarray, cid: np.ndarray, dem: np.ndarray, aspect: np.ndarray,
                 *layers: np.ndarray, parts: int, level: int, layout: Layout, band_origin_m: float, band_m: float,
                 with_prob: bool, with_observed: bool, with_indices: bool) -> np.ndarray:
    """Per-glacier sums of one part of a block -> (1, years, 1, 1, n_bins) float64.

    ``part`` (1,) int: which of ``parts`` equal row stripes of the block this call sums (a block
    can be split between cores without copying it: each stripe still sees its neighbour rows).
    ``values`` (years, y, x): the mask, bool or integer probabilities 0-255; a pixel is mapped
    where ``values >= level``. ``cid`` (y, x): compact glacier indices (`compact_ids`). Edges are
    counted as if nothing lay outside the block: the pairs across the seams between blocks are
    taken back afterwards (`seam_pairs`). ``dem`` and ``aspect`` (y, x) float32. ``layers``:
    ``observed`` (years, y, x), the store's layer (0 or False = not observed), if ``with_observed``;
    then ``indices`` (years, y, x), the store's index bits, if ``with_indices``. With ``with_prob`` ``values`` are probabilities (each pixel's chance of
    being misclassified is 1 - p where mapped, p where not). Without ``with_observed`` every pixel
    counts as observed, without ``with_indices`` none was compared.
    """
    n_years, ny, p = values.shape[0], values.shape[1], int(part[0])
    layers = list(layers)
    observed = layers.pop(0) if with_observed else values  # placeholders are not read
    indices = layers.pop(0) if with_indices else values
    out = np.zeros((1, n_years, 1, 1, layout.size), np.float64)
    _accumulate(out.reshape(n_years, layout.size), p * ny // parts, (p + 1) * ny // parts, values, level, with_prob,
                cid, dem, aspect, observed, with_observed, indices, with_indices, np.float64(band_origin_m),
                np.float64(band_m), layout.n_bands, N_SECTORS, layout.starts())
    return out


@numba.njit(nogil=True, cache=True)
def _accumulate(out, r0, r1, values, level, with_prob, cid, dem, aspect, observed, with_observed, indices, with_indices,
                band_origin, band_m, n_bands, n_sectors, at):  # pragma: no cover - compiled
    # `at`: the start of each statistic in Layout.NAMES order. Each statistic is computed as the
    # numpy version of this module computed it (float64 from the float32 inputs; the sector as
    # catalog.aspect.aspect_class; radians, sin and cos as numpy's). A row is swept in runs of one
    # glacier's pixels: what does not change with the year (elevation band, sector, aspect vector)
    # once per pixel into row buffers, then each year's run summed in locals and added once.
    count, edges, z_sum, z_n, s_sin, s_cos, s_sector, s_band, outline_n, unobs = at[0], at[1], at[2], at[3], at[4], \
        at[5], at[6], at[7], at[8], at[9]
    miss, cmp_n, cmp_model, cmp_ndsi, cmp_ratio, xor_ndsi, or_ndsi, xor_ratio, or_ratio = at[10], at[11], at[12], \
        at[13], at[14], at[15], at[16], at[17], at[18]
    one, scale = np.float32(1.0), np.float32(255.0)
    not_read, ndsi_bit, ratio_bit = INDICES_NOT_READ, NDSI_BIT, RATIO_BIT
    ny, nx = dem.shape
    z_row = np.empty(nx, np.float64)  # NaN where no elevation
    band_row = np.empty(nx, np.int64)  # -1: none (no elevation or outside the bands)
    sector_row = np.empty(nx, np.int64)  # -1: no aspect
    sin_row = np.empty(nx, np.float64)
    cos_row = np.empty(nx, np.float64)
    for r in range(r0, r1):
        c0 = 0
        while c0 < nx:
            k = cid[r, c0]
            c1 = c0 + 1
            while c1 < nx and cid[r, c1] == k:
                c1 += 1
            if k == 0:
                c0 = c1
                continue
            for c in range(c0, c1):  # what does not change with the year, once per pixel
                z = np.float64(dem[r, c])
                z_row[c] = z
                band = np.int64(-1)
                if np.isfinite(z):
                    b = np.floor((z - band_origin) / band_m)
                    band = np.int64(b) if 0 <= b < n_bands else np.int64(-1)
                band_row[c] = band
                a = np.float64(aspect[r, c])
                sector_row[c] = -1
                if np.isfinite(a):
                    # catalog.aspect.aspect_class, floor(((a + 22.5) % 360) / 45) % 8, without a float modulo
                    # for the usual 0 <= a < 360 (the modulo and floor were a quarter of this loop's time)
                    w = a + 22.5
                    w = w - 360.0 if w >= 360.0 else (w % 360.0 if w < 0.0 else w)
                    sector = np.int64(w / 45.0)  # 0-7 but where rounding gives 8 (no integer modulo)
                    sector_row[c] = sector - n_sectors if sector >= n_sectors else sector
                    rad = np.radians(a)
                    sin_row[c], cos_row[c] = np.sin(rad), np.cos(rad)
            up = r > 0
            down = r < ny - 1
            for t in range(values.shape[0]):
                o = out[t]
                n, e, zs, zn, ss, cs, hidden_n, miss_s = 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
                c_n, c_model, c_ndsi, c_ratio, x_ndsi, u_ndsi, x_ratio, u_ratio = 0, 0, 0, 0, 0, 0, 0, 0
                for c in range(c0, c1):
                    here = values[t, r, c] >= level
                    if here:
                        n += 1.0
                        # exposed edges: 4-connected neighbours that are not this glacier's mapped pixels
                        # (outside the block counts as exposed here; seam_pairs takes the shared ones back);
                        # along the row, the run's own pixels are this glacier's and its ends' neighbours are not
                        e += not (up and values[t, r - 1, c] >= level and cid[r - 1, c] == k)
                        e += not (down and values[t, r + 1, c] >= level and cid[r + 1, c] == k)
                        e += not (c > c0 and values[t, r, c - 1] >= level)
                        e += not (c < c1 - 1 and values[t, r, c + 1] >= level)
                        z = z_row[c]
                        if np.isfinite(z):
                            zs += z
                            zn += 1.0
                            if band_row[c] >= 0:
                                o[s_band + k * n_bands + band_row[c]] += 1.0
                        if sector_row[c] >= 0:
                            ss += sin_row[c]
                            cs += cos_row[c]
                            o[s_sector + k * n_sectors + sector_row[c]] += 1.0
                    hidden = with_observed and observed[t, r, c] == 0
                    hidden_n += 1.0 if hidden else 0.0
                    if with_prob:
                        p = np.float32(values[t, r, c]) / scale
                        miss_s += np.float64(one - p if here else p)
                    bits = indices[t, r, c] if with_indices else not_read
                    if not hidden and bits != not_read:  # compared: observed, and its indices were read
                        ndsi, ratio = (bits & ndsi_bit) > 0, (bits & ratio_bit) > 0
                        c_n += 1
                        c_model += here
                        c_ndsi += ndsi
                        c_ratio += ratio
                        x_ndsi += here != ndsi
                        u_ndsi += here or ndsi
                        x_ratio += here != ratio
                        u_ratio += here or ratio
                o[outline_n + k] += c1 - c0
                o[count + k] += n
                o[edges + k] += e
                o[z_sum + k] += zs
                o[z_n + k] += zn
                o[s_sin + k] += ss
                o[s_cos + k] += cs
                o[unobs + k] += hidden_n
                o[miss + k] += miss_s
                o[cmp_n + k] += c_n
                o[cmp_model + k] += c_model
                o[cmp_ndsi + k] += c_ndsi
                o[cmp_ratio + k] += c_ratio
                o[xor_ndsi + k] += x_ndsi
                o[or_ndsi + k] += u_ndsi
                o[xor_ratio + k] += x_ratio
                o[or_ratio + k] += u_ratio
            c0 = c1


def seam_pairs(mask_a: np.ndarray, mask_b: np.ndarray, ids_a: np.ndarray, ids_b: np.ndarray, level: int,
               k: int) -> np.ndarray:
    """Per-glacier count of neighbour pairs across one seam -> (years, 1, k) float64.

    ``mask_a`` / ``mask_b`` (years, n) (mapped where ``>= level``) and ``ids_a`` / ``ids_b`` (n,): the
    pixel line either side of a seam between blocks, from each block. A pair whose two pixels are the
    same glacier's mapped pixels is an inner edge that each block's `reduce_block` counted as exposed,
    once from each side.
    """
    out = np.zeros((mask_a.shape[0], 1, k), np.float64)
    _seam(out[:, 0], mask_a, mask_b, ids_a, ids_b, level)
    return out


@numba.njit(nogil=True, cache=True)
def _seam(out, mask_a, mask_b, ids_a, ids_b, level):  # pragma: no cover - compiled
    for c in range(ids_a.shape[0]):
        k = ids_a[c]
        if k != 0 and ids_b[c] == k:
            for t in range(mask_a.shape[0]):
                if mask_a[t, c] >= level and mask_b[t, c] >= level:
                    out[t, k] += 1.0
