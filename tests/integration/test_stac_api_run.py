"""The study through a real STAC API and HTTP range requests equals the study on the catalog on disk.

stac-fastapi-pgstac serves the quarter-size area's collections and items (loaded with pypgstac,
asset hrefs moved to nginx); glacierwatch finds scenes through it with pystac-client, using
Earth Search's provider profile (the synthetic items carry Earth Search's collection ids, asset
keys and properties), and GDAL reads the COGs from nginx. Same pixels, same numbers.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pystac
from pystac_client import Client

from integration.conftest import assert_same_outputs


def test_the_api_serves_every_item_of_the_catalog_with_hrefs_on_nginx(stack, direct_api, small_study_area):
    catalog = pystac.Catalog.from_file(str(small_study_area.catalog))
    api = Client.open(direct_api, timeout=30)
    for collection in catalog.get_collections():
        expected = {item.id for item in collection.get_items()}
        served = list(api.search(collections=[collection.id], max_items=None).items())
        assert {item.id for item in served} == expected, collection.id
        assert all(a.href.startswith(f"{stack.nginx.url}/{collection.id}/") for i in served for a in i.assets.values())


def test_nginx_answers_range_requests_with_the_bytes_asked_for(stack, small_study_area):
    cog = next(Path(small_study_area.root, "sentinel-2-l2a").glob("*/blue.tif"))
    url = f"{stack.nginx.url}/{cog.relative_to(small_study_area.root).as_posix()}"
    request = urllib.request.Request(url, headers={"Range": "bytes=1000-1999"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 1000-1999/{cog.stat().st_size}"
        assert response.read() == cog.read_bytes()[1000:2000]


def test_run_through_the_stac_api_equals_the_run_on_the_catalog_on_disk(stack, api_run, local_run):
    assert api_run.result.provenance["skipped_scenes"] == {"sentinel-2": [], "landsat": []}
    assert_same_outputs(local_run, api_run.result)
    # ... and its pixels did come over HTTP: GDAL's partial reads are in nginx's log
    log = (stack.nginx.prefix / "access.log").read_text()
    assert '" 206 ' in log and "GDAL/" in log
