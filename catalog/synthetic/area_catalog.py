"""The study area's STAC catalog: item dicts gathered into collections and saved self-contained.

Asset hrefs are made relative to their item, so the catalog stays valid after the temporary
folder is moved into place and wherever the area is copied. Values are made plain Python first
because pystac writes with orjson when it is installed, which refuses numpy types.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac


def plain_python(value):
    """numpy scalars and arrays as Python numbers and lists: pystac writes with orjson when it is
    installed, and orjson refuses numpy types that the standard json module lets through."""
    if isinstance(value, dict):
        return {k: plain_python(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_python(v) for v in value]
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value


def make_collection(cid: str, title: str, items: list[pystac.Item]) -> pystac.Collection:
    bboxes = np.array([i.bbox for i in items])
    times = sorted(i.datetime for i in items)
    extent = pystac.Extent(
        pystac.SpatialExtent([[*bboxes[:, :2].min(0).tolist(), *bboxes[:, 2:].max(0).tolist()]]),
        pystac.TemporalExtent([[times[0], times[-1]]]),
    )
    coll = pystac.Collection(cid, f"Synthetic {title} over the embedded study area (glacierwatch)", extent, title=title,
                             license="CC-BY-4.0")
    coll.add_items(items)
    return coll


def write_catalog(root: Path, items: dict[str, list[dict]]) -> Path:
    catalog = pystac.Catalog("glacierwatch-synthetic", "Embedded synthetic study area at Yilian Habirga (central Tianshan)")
    titles = {"sentinel-2-l2a": "Sentinel-2 L2A", "landsat-c2-l2": "Landsat C2 L2", "cop-dem-glo-30": "Copernicus DEM GLO-30"}
    for cid, dicts in items.items():
        stac_objs = []
        for d in sorted(dicts, key=lambda d: (d["properties"]["datetime"], d["id"])):
            item = pystac.Item.from_dict(plain_python(d), migrate=False)
            folder = root / cid / item.id
            for asset in item.assets.values():
                asset.href = str(folder / Path(asset.href).name)
            stac_objs.append(item)
        catalog.add_child(make_collection(cid, titles[cid], stac_objs))
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"
