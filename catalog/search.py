"""Scene search with one signature for a public STAC API and a static catalog on disk.

pystac-client cannot search a static catalog (it needs the ITEM_SEARCH conformance class),
so `LocalCatalogSource` walks the catalog once and filters in process with the semantics of
a STAC API search: collection ids, bbox intersecting the item geometry (either side of the
antimeridian, see catalog.items.item_footprint), an inclusive datetime interval,
`eo:cloud_cover <= max` (items without cloud cover never match a cloud limit, as a STAC API's
`query` does) and `platform in [...]` when the query names platforms.

Platforms are filtered on the client for a STAC API too: the `query` extension's `in`
operator is not served everywhere (stac-fastapi-pgstac 7.2 rejects it), and the few extra
items a search returns (Landsat 7 scenes) cost nothing next to reading one scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Callable, Protocol

import pystac
from shapely.geometry import box

from catalog.items import footprint_meets, item_footprint
from catalog.redact import redact


class SearchError(RuntimeError):
    """A search that cannot give what was asked; the message says what to change.

    Messages quote STAC URLs, which may carry a token (``?subscription-key=...``): the message
    is redacted (catalog.redact) once here, for every place that raises one.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(redact(str(message)), *args)


@dataclass(frozen=True)
class SceneQuery:
    collection: str
    bbox: tuple[float, float, float, float]  # lon/lat
    start: datetime  # inclusive, UTC
    end: datetime  # inclusive, UTC
    max_cloud: float | None = None  # percent
    platforms: tuple[str, ...] | None = None  # `platform` values accepted (None: any)

    def datetime_interval(self) -> str:
        return f"{self.start.strftime('%Y-%m-%dT%H:%M:%SZ')}/{self.end.strftime('%Y-%m-%dT%H:%M:%SZ')}"

    def query_extension(self) -> dict | None:
        """The STAC API `query` filter (the cloud limit: `lte` is served by every API), or None."""
        return {"eo:cloud_cover": {"lte": self.max_cloud}} if self.max_cloud is not None else None

    def platform_ok(self, item: pystac.Item) -> bool:
        """The item's `platform` is one the query accepts (case ignored; any when the query names none)."""
        if not self.platforms:
            return True
        return str(item.properties.get("platform", "")).lower() in {p.lower() for p in self.platforms}


class SceneSource(Protocol):
    """Where scenes come from: anything that answers a SceneQuery with STAC items."""

    url: str

    def search(self, query: SceneQuery) -> list[pystac.Item]: ...

    def coverage(self, collection: str) -> tuple[float, float, float, float] | None:
        """Lon/lat bbox of everything in a collection (None if unknown)."""
        ...


def _sorted(items) -> list[pystac.Item]:
    return sorted(items, key=lambda i: (i.datetime or datetime.min.replace(tzinfo=timezone.utc), i.id))


class StacApiSource:
    """A STAC API (Earth Search, Planetary Computer, pgstac) through pystac-client."""

    def __init__(self, url: str, modifier: Callable | None = None):
        self.url = url
        self._modifier = modifier

    @cached_property
    def _client(self):
        from pystac_client import Client

        try:
            return Client.open(self.url, modifier=self._modifier)
        except Exception as err:  # network errors come in many types; all mean the same here
            raise SearchError(
                f"STAC API {self.url} cannot be reached ({type(err).__name__}): check the URL and the network, "
                "or use provider 'local'"
            ) from err

    def search(self, query: SceneQuery) -> list[pystac.Item]:
        search = self._client.search(
            collections=[query.collection],
            bbox=list(query.bbox),
            datetime=query.datetime_interval(),
            query=query.query_extension(),
        )
        return _sorted(i for i in search.items() if query.platform_ok(i))

    def coverage(self, collection: str):
        client = self._client  # an API that cannot be reached is an error (SearchError), not "unknown coverage"
        try:
            bboxes = client.get_collection(collection).extent.spatial.bboxes
        except Exception:  # an API without collection metadata: the searches will tell
            return None
        return tuple(bboxes[0]) if bboxes else None


class LocalCatalogSource:
    """A static STAC catalog on disk (the embedded study area, or a user's own)."""

    def __init__(self, path: str | Path):
        self.url = str(path)
        if not Path(path).is_file():
            raise SearchError(
                f"no STAC catalog at {path}: run `glacierwatch synth` to write the embedded study area there, "
                "or point the provider's url at your catalog.json"
            )
        try:
            self._catalog = pystac.Catalog.from_file(str(path))
        except (ValueError, OSError, pystac.STACError) as err:  # truncated JSON, not a catalog, unreadable
            raise SearchError(
                f"STAC catalog {path} cannot be read ({type(err).__name__}: {err}): regenerate it "
                "(`glacierwatch synth` for the embedded area) or fix the file"
            ) from None

    @cached_property
    def _items(self) -> dict[str, list[tuple[pystac.Item, object]]]:
        by_collection: dict[str, list] = {}
        try:
            for item in self._catalog.get_items(recursive=True):
                item.make_asset_hrefs_absolute()
                by_collection.setdefault(item.collection_id, []).append((item, item_footprint(item)))
        except (ValueError, OSError, pystac.STACError) as err:  # a link to a missing or broken item or collection
            raise SearchError(
                f"STAC catalog {self.url} links to a file that cannot be read ({type(err).__name__}: {err}): "
                "regenerate the catalog (`glacierwatch synth` for the embedded area) or remove the broken link"
            ) from None
        return by_collection

    def search(self, query: SceneQuery) -> list[pystac.Item]:
        area = box(*query.bbox)
        hits = []
        for item, geom in self._items.get(query.collection, []):
            start = item.common_metadata.start_datetime or item.datetime
            end = item.common_metadata.end_datetime or item.datetime
            if end < query.start or start > query.end or not footprint_meets(geom, area):
                continue
            if not query.platform_ok(item):
                continue
            if query.max_cloud is not None:
                cloud = item.properties.get("eo:cloud_cover")
                if cloud is None or cloud > query.max_cloud:
                    continue
            hits.append(item)
        return _sorted(hits)

    def coverage(self, collection: str):
        geoms = [g for _, g in self._items.get(collection, []) if g is not None]
        if not geoms:
            return None
        bounds = [g.bounds for g in geoms]
        return (min(b[0] for b in bounds), min(b[1] for b in bounds), max(b[2] for b in bounds), max(b[3] for b in bounds))


def open_source(url: str, modifier: Callable | None = None) -> SceneSource:
    """An http(s) URL is a STAC API; anything else is a static catalog on disk."""
    if url.startswith(("http://", "https://")):
        return StacApiSource(url, modifier)
    return LocalCatalogSource(url)
