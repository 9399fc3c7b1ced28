"""GDAL settings for reading scenes, in one place.

stackstac enters this environment in the thread that reads, so it holds on Dask workers too.
- GDAL_CACHEMAX: GDAL's block cache defaults to 5 % of RAM and keeps decompressed blocks of
  every dataset a reader holds open; reading a larger region then keeps more of it (measured:
  a yearly composite's peak memory grew with the region). A fixed cache keeps per-worker
  memory bounded by the chunk size, not the region.
- HTTP retries: public COGs sit behind networks that drop a request now and then.
"""

from __future__ import annotations

from stackstac.rio_reader import DEFAULT_GDAL_ENV

GDAL_CACHE_MB = 64
HTTP_MAX_RETRY = 5
HTTP_RETRY_DELAY_S = 1

SCENE_READ_ENV = DEFAULT_GDAL_ENV.updated(
    always=dict(
        GDAL_CACHEMAX=GDAL_CACHE_MB,
        GDAL_HTTP_MAX_RETRY=HTTP_MAX_RETRY,
        GDAL_HTTP_RETRY_DELAY=HTTP_RETRY_DELAY_S,
    )
)
