"""Results still to compute, so that several come out of one read of the store.

Each producer of a table from the stored maps (statistics, outlines, the snow rule's area, accuracy,
the fixed aspect) builds a `Deferred`: the dask collections it needs and how to finish its table
from their values. `compute_together` computes all of them in one ``dask.compute``: Dask merges
their graphs, so a chunk of ``probability`` (or ``indices``, ``glacier_id``) that several of them
need is read once and handed to each, instead of once per table (issue #17: "one pass over the
store"). Each producer keeps its eager form, ``Deferred.compute()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import dask

__all__ = ["Deferred", "compute_together"]

T = TypeVar("T")


@dataclass(frozen=True)
class Deferred(Generic[T]):
    """`finish(*values of collections)` is the result; nothing is read until `compute_together`."""

    collections: tuple[Any, ...]
    finish: Callable[..., T]

    def compute(self) -> T:
        return compute_together(self)[0]


def compute_together(*deferred: Deferred) -> list[Any]:
    """The result of each of `deferred`, in order, from one ``dask.compute`` of all their collections."""
    flat = [c for d in deferred for c in d.collections]
    # dask 2026.8's optimised compute returns the results grouped by kind of collection (each kind
    # in the order it first appears: [array, delayed, array] comes back as [array, array, delayed]);
    # so they go in grouped and are put back in the callers' order
    kinds = {kind: rank for rank, kind in enumerate(dict.fromkeys(type(c) for c in flat))}
    order = sorted(range(len(flat)), key=lambda i: kinds[type(flat[i])])
    values: list[Any] = [None] * len(flat)
    for i, value in zip(order, dask.compute(*[flat[i] for i in order]), strict=True):
        values[i] = value
    out, start = [], 0
    for d in deferred:
        out.append(d.finish(*values[start:start + len(d.collections)]))
        start += len(d.collections)
    return out

