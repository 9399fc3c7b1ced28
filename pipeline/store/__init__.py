"""The region's Zarr v3 store: yearly glacier probabilities and the static layers, per sensor grid.

One store per region, one group per sensor grid; runs append years and resume unit by unit,
byte for byte as a clean run would write. One concept a module, in the order they build on
each other:

- `errors`: `StoreError` and `IncompatibleStoreError`;
- `layout`: the arrays, dtypes, fill values, codecs and CF georeferencing, and creating them;
- `encoding`: `encode_probability`, `encode_observed`, `encode_indices` (floats/counts to the layers);
- `access`: `StoreAccess`, the read side: location, metadata, years, units, xarray view, lock;
- `tasks`: the Dask write tasks and `shared_blocks`;
- `writes`: `UnitWrites`, writing units of the yearly layers and whole static layers;
- `compat`: `check_compatible`, refusing a store made with another grid or other weights, and
  `check_same_inventory`, one whose glacier_id came from another inventory;
- `region`: `RegionStore`, all of the above plus creating the layout and adding years.
"""

from pipeline.store.access import StoreAccess
from pipeline.store.compat import check_compatible, check_same_inventory
from pipeline.store.encoding import (
    MAX_CLEAR_COUNT,
    NDSI_BIT,
    NDSI_THRESHOLD,
    RATIO_BIT,
    RATIO_THRESHOLD,
    encode_indices,
    encode_observed,
    encode_probability,
)
from pipeline.store.errors import IncompatibleStoreError, StoreError
from pipeline.store.layout import (
    DEFAULT_CHUNK,
    DOY,
    INDICES,
    INDICES_NOT_READ,
    LAYOUT_VERSION,
    OBSERVED,
    OBSERVED_NOT_READ,
    PROBABILITY,
    RUN_GROUP,
    STATIC_LAYERS,
    YEARLY_LAYERS,
    glacierwatch_version,
    grid_mapping_attrs,
)
from pipeline.store.manifest import Unit
from pipeline.store.region import RegionStore
from pipeline.store.tasks import shared_blocks
from pipeline.store.writes import UnitWrites

__all__ = [
    "DEFAULT_CHUNK",
    "DOY",
    "INDICES",
    "INDICES_NOT_READ",
    "IncompatibleStoreError",
    "LAYOUT_VERSION",
    "MAX_CLEAR_COUNT",
    "NDSI_BIT",
    "NDSI_THRESHOLD",
    "OBSERVED",
    "OBSERVED_NOT_READ",
    "PROBABILITY",
    "RATIO_BIT",
    "RATIO_THRESHOLD",
    "RUN_GROUP",
    "RegionStore",
    "STATIC_LAYERS",
    "StoreAccess",
    "StoreError",
    "Unit",
    "UnitWrites",
    "YEARLY_LAYERS",
    "check_compatible",
    "check_same_inventory",
    "encode_indices",
    "encode_observed",
    "encode_probability",
    "glacierwatch_version",
    "grid_mapping_attrs",
    "shared_blocks",
]
