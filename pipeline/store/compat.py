"""Whether an existing store may take this run's years: the same grid and the same weights per sensor.

Appending years to a store only makes sense when every year comes from the same grid and the
same model; a store made otherwise is refused here, before anything is computed, with the two
ways out (a new store, or the config that made it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from catalog.grid import TargetGrid
from pipeline.store.access import StoreAccess
from pipeline.store.errors import IncompatibleStoreError, StoreError
from pipeline.store.layout import describe_grid, grid_from_record


def weights_by_sensor(grids: Mapping[str, TargetGrid], weights_sha256: str | Mapping[str, str]) -> dict[str, str]:
    """sensor -> weights sha256 for every sensor of `grids` (one hash given: the same for all)."""
    if isinstance(weights_sha256, str):
        return {s: weights_sha256 for s in grids}
    missing = sorted(set(grids) - set(weights_sha256))
    if missing:
        raise StoreError(f"no weights sha256 given for sensor(s) {', '.join(missing)}")
    return {s: str(weights_sha256[s]) for s in grids}


def check_compatible(
    store: StoreAccess | str,
    grids: Mapping[str, TargetGrid],
    weights_sha256: str | Mapping[str, str],
) -> None:
    """Refuse (IncompatibleStoreError) a store made with other grids or other weights than asked.

    `store`: a `RegionStore` or its URL. `grids` maps sensor -> the grid this run computes;
    sensors the store lacks are fine (they can be added). Appending years to a store only makes
    sense when every year comes from the same grid and the same model.
    """
    store = store if isinstance(store, StoreAccess) else StoreAccess.open(store)
    meta = store.metadata
    stored = {s: grid_from_record(r) for s, r in meta["grids"].items()}
    new_store = "start a new store (set `store:` in the config to a new path)"
    for sensor, grid in sorted(grids.items()):
        if sensor in stored and stored[sensor] != grid:
            raise IncompatibleStoreError(
                f"store at {store.url} was made with {sensor} grid {describe_grid(stored[sensor])}; "
                f"this config asks for {describe_grid(grid)}: {new_store}, or set the region "
                "(bbox, crs, resolution) back to the one that made it"
            )
    weights = weights_by_sensor(grids, weights_sha256)
    for sensor, digest in sorted(weights.items()):
        made_with = meta["weights_sha256"].get(sensor)
        if made_with is not None and made_with != digest:
            raise IncompatibleStoreError(
                f"store at {store.url} holds {sensor} probabilities made with weights sha256 {made_with}; "
                f"this config asks for weights sha256 {digest}: {new_store}, or use the weights that made it "
                f"(sensors.{sensor}.weights with sha256 {made_with})"
            )


def check_same_inventory(store: StoreAccess | str, sensors: Sequence[str], sha256: str, source: str) -> None:
    """Refuse (IncompatibleStoreError) a store whose ``glacier_id`` was rasterised from another
    inventory (or buffer) than `sha256` (`pipeline.glaciers.inventory.inventory_sha256`): its layer
    is never rewritten, so the run would label pixels with the old outlines. Stores that recorded
    no fingerprint (made before it was kept) are not checked."""
    store = store if isinstance(store, StoreAccess) else StoreAccess.open(store)
    for sensor in sensors:
        if sensor not in store.metadata["grids"] or not store.static_complete(sensor, "glacier_id"):
            continue
        made_with = store.array(f"{sensor}/glacier_id").attrs.get("inventory_sha256")
        if made_with is not None and made_with != sha256:
            raise IncompatibleStoreError(
                f"store at {store.url} holds a {sensor} glacier_id layer rasterised from another inventory or "
                f"analysis.glacier_buffer_m (sha256 {made_with}) than {source} (sha256 {sha256}): start a new store "
                "(set `store:` in the config to a new path), or set inventory.path and analysis.glacier_buffer_m back "
                "to those that made it"
            )

