"""One pass over the store: every table of a sensor comes from one read of each probability chunk.

Statistics, outlines, the snow rule's area, the fixed aspect, the accuracy and the published masks'
tiles are computed together (`pipeline.glaciers.deferred`); the terminus then reads the windows
around the glaciers' outlines.
"""

from __future__ import annotations

from collections import Counter

import dask
import dask.array as da
import numpy as np
import pandas as pd
import rasterio
import zarr.storage

from pipeline.glaciers import analysis
from pipeline.glaciers.deferred import Deferred, compute_together
from pipeline.outputs.glacier_masks import write_glacier_masks
from pipeline.run import truth_dir_for
from pipeline.store import RegionStore

READS: Counter = Counter()


class CountingStore(zarr.storage.WrapperStore):
    """Counts each key read (a module-level class: Dask pickles the store by reference)."""

    async def get(self, key, prototype, byte_range=None):
        READS[key] += 1
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        READS.update(k for k, _ in key_ranges)
        return await super().get_partial_values(prototype, key_ranges)


def test_results_come_back_in_the_callers_order_whatever_the_kinds_of_collections():
    """dask 2026.8 returns a mixed compute grouped by kind ([array, delayed, array] as [array,
    array, delayed]); `compute_together` must hand each result to its own finisher."""
    x = da.arange(16, chunks=4)
    first = Deferred((x.sum(),), lambda s: ("array", int(s)))
    second = Deferred((dask.delayed(lambda: "pieces")(),), lambda v: ("delayed", v))
    third = Deferred((x.max(), (x * 2).sum()), lambda m, s: ("arrays", int(m), int(s)))
    assert compute_together(first, second, third) == [("array", 120), ("delayed", "pieces"), ("arrays", 15, 240)]
    assert second.compute() == ("delayed", "pieces")


def test_each_probability_chunk_is_read_once_for_all_tables_and_masks_before_the_terminus(small_run, monkeypatch, tmp_path):
    cfg, result = small_run
    store = RegionStore.open(result.store_url)
    store.__dict__["zarr_store"] = CountingStore(store.zarr_store)  # the cached property, counted
    before_terminus: dict[str, Counter] = {}
    terminus_tables = analysis.terminus_tables

    def snapshot(outlines, *args, **kwargs):
        before_terminus[str(outlines["sensor"].iloc[0])] = Counter(READS)
        return terminus_tables(outlines, *args, **kwargs)

    monkeypatch.setattr(analysis, "terminus_tables", snapshot)
    sensors = list(store.sensors())
    READS.clear()
    tables, _, masks = analysis.analyse_store(store, cfg.analysis, sensors=sensors, truth_dir=truth_dir_for(cfg, sensors),
                                              with_masks=True)
    for sensor in sensors:
        chunks = [k for k in READS if k.startswith(f"{sensor}/probability/c/")]
        n_chunks = int(np.prod([len(c) for c in store.open_dataset(sensor).probability.chunks]))
        assert len(chunks) == n_chunks  # every chunk was read ...
        pass_reads = {k: before_terminus[sensor][k] for k in chunks}
        assert set(pass_reads.values()) == {1}, pass_reads  # ... once for statistics, outlines, snow rule and accuracy
        indices = [k for k in READS if k.startswith(f"{sensor}/indices/c/")]
        assert indices and {before_terminus[sensor][k] for k in indices} == {1}
    # the published masks come from that read: writing them reads no probability chunk again,
    # and they equal the masks thresholded from the store's maps
    assert sorted(masks) == sorted(sensors)
    probability_reads = {k: n for k, n in READS.items() if "/probability/" in k}
    written = write_glacier_masks(store.url, tmp_path / "from-pass", analysis=cfg.analysis, tiles=masks)
    assert {k: n for k, n in READS.items() if "/probability/" in k} == probability_reads
    for key, path in write_glacier_masks(store.url, tmp_path / "from-store", analysis=cfg.analysis).items():
        with rasterio.open(path) as read, rasterio.open(written[key]) as ours:
            np.testing.assert_array_equal(ours.read(1), read.read(1))
    # and the tables are all there: one pass lost none of them
    assert set(tables["accuracy"].sensor) == set(sensors)
    key = ["sensor", "glacier_id", "year"]
    pd.testing.assert_frame_equal(tables["areas"].sort_values(key, ignore_index=True),
                                  result.tables["areas"][tables["areas"].columns].sort_values(key, ignore_index=True))
