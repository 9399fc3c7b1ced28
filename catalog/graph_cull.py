"""Culling that keeps only the tasks asked for: the fix for a dask shortcut that kept whole layers.

`HighLevelGraph.cull` walks the layers from the outputs back and hands each layer's `cull` the
keys wanted so far from *every* layer. `Layer.cull`, which every layer but `Blockwise` uses (dask
2026.8.0, unchanged in 2026.11.0; its task-spec path, `dask._task_spec.cull`, and its legacy path
alike), returns the layer whole when that set has as many keys as the layer has tasks, as if they
were the layer's own. Which layer
meets that coincidence depends on the order of the layers, a set's order (the hash seed, the
tokens): a selected tile's pieces far from every glacier (`HaloLayout.blank_pieces`) were cut from
the graph in some processes and read in others (a test's cut graph counted 31, 37 or 48 reads
between identical runs, 2 of 10). Handing the layer only its own keys is what the shortcut
assumed, so the result is otherwise the same; where dask culls exactly, nothing is changed.
"""

from __future__ import annotations

from dask.highlevelgraph import Layer, MaterializedLayer


def _keeps_whole_layer_for_others_keys() -> bool:
    """Whether Layer.cull keeps a task that only another layer's key made it look at."""
    layer = MaterializedLayer({("a", 0): 1, ("a", 1): 2})
    culled, _ = layer.cull({("a", 0), ("b", 0)}, {("a", 0), ("a", 1), ("b", 0)})
    return ("a", 1) in culled


def ensure_exact_layer_cull() -> None:
    """Make Layer.cull see only the layer's own keys, where dask's does not already cull exactly."""
    if getattr(Layer.cull, "_own_keys_only", False) or not _keeps_whole_layer_for_others_keys():
        return
    dask_cull = Layer.cull

    def cull(self, keys, all_hlg_keys):
        own = {k for k in keys if k in self} if len(keys) < len(self) else {k for k in self if k in keys}
        return dask_cull(self, own, all_hlg_keys)

    cull.__doc__ = dask_cull.__doc__
    cull._own_keys_only = True
    Layer.cull = cull
