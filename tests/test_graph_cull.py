"""A cut graph stays cut (catalog.graph_cull): culling keeps no task that only another layer's keys counted toward."""

from __future__ import annotations

import dask
from dask._task_spec import Task, TaskRef
from dask.highlevelgraph import HighLevelGraph, Layer, MaterializedLayer

from catalog.graph_cull import _keeps_whole_layer_for_others_keys, ensure_exact_layer_cull  # importing catalog installs it


def _inc(x):
    return x + 1


def _graph() -> HighLevelGraph:
    """'read' (2 tasks, of which 'use' needs one) declared after 'other' (1 task), so the cull meets 'read'
    while 'other's key is still wanted: two keys wanted, two tasks in 'read', the coincidence dask's
    shortcut took for "all of them"."""
    layers = {
        "other": MaterializedLayer({("other", 0): Task(("other", 0), _inc, 0)}),
        "read": MaterializedLayer({("read", i): Task(("read", i), _inc, i) for i in range(2)}),
        "use": MaterializedLayer({("use", 0): Task(("use", 0), _inc, TaskRef(("read", 0)))}),
    }
    return HighLevelGraph(layers, {"other": set(), "read": {"other"}, "use": {"read"}})


def test_a_layer_keeps_only_the_tasks_asked_for():
    graph = _graph()
    culled = graph.cull({("use", 0), ("other", 0)})
    assert set(culled.to_dict()) == {("use", 0), ("read", 0), ("other", 0)}  # ("read", 1): asked for by no one
    assert dask.get(culled.to_dict(), [("use", 0), ("other", 0)]) == (2, 1)


def test_the_fix_is_installed_once_and_only_changes_what_was_wrong():
    assert getattr(Layer.cull, "_own_keys_only", False)
    assert not _keeps_whole_layer_for_others_keys()
    installed = Layer.cull
    ensure_exact_layer_cull()
    assert Layer.cull is installed  # importing twice does not wrap twice
    layer = MaterializedLayer({("a", 0): 1, ("a", 1): 2})
    whole, _ = layer.cull({("a", 0), ("a", 1), ("b", 0)}, {("a", 0), ("a", 1), ("b", 0)})
    assert set(whole) == {("a", 0), ("a", 1)}
    none, deps = layer.cull({("b", 0)}, {("a", 0), ("a", 1), ("b", 0)})
    assert not dict(none) and not deps
