"""GDAL settings for reading scenes, in one place.

stackstac enters this environment in the thread that reads, so it holds on Dask workers too.
- GDAL_CACHEMAX: GDAL's block cache defaults to 5 % of RAM and keeps decompressed blocks of
  every dataset a reader holds open; reading a larger region then keeps more of it (measured:
  a yearly composite's peak memory grew with the region). Within the reads' environment it is
  64 bytes (GDAL_CACHE_BYTES): no decoded block outlives the read that decoded it, so per-worker
  memory is bounded by the chunk size, not the region.
- HTTP retries: public COGs sit behind networks that drop a request now and then. A chunk's
  assets are read concurrently (catalog.reads.read_chunk), so one asset's retry delay overlaps
  the others' reads instead of adding to them; the first retry comes soon (HTTP_RETRY_DELAY_S).
- Range requests: stackstac's defaults (kept here) already ask for GDAL_HTTP_MULTIRANGE=YES and
  GDAL_HTTP_MERGE_CONSECUTIVE_RANGES=YES, and GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR on open.
  Measured through the integration suite's proxy (docs/benchmarks.md): a run makes ~2 ranged
  requests per asset (header, then the merged tiles of the window); EMPTY_DIR for the reads'
  own opens too changed no request count, so nothing is added.
- Object storage: each provider profile adds its own settings per kind (providers.yaml
  `gdal_env`: unsigned reads of a public bucket, requester pays), see scene_read_env;
  check_object_storage says before any work what a requester-pays bucket needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from stackstac.rio_reader import DEFAULT_GDAL_ENV, LayeredEnv

from catalog.providers import ProviderError, ProviderProfile

GDAL_CACHE_BYTES = 64
"""rasterio.Env hands GDAL_CACHEMAX to GDALSetCacheMax64 as bytes (rasterio#1042), not as GDAL's
megabytes: 64 is 64 bytes, while the reads' environment is entered, which is what was measured to
keep memory flat. Tried 2026-12-07 and not taken: a real 64 MB cache with each COG kept open
between reads (a process pool of 128 idle datasets): the inference benchmark's 512 px pieces 19 %
faster (neighbouring pieces share blocks), the x1 run at 2,048 px no faster and +260-310 MB per
worker (tests/bench/bench_run.py, alternating with the code before)."""
# GDAL backs off exponentially with jitter from the first delay (~x2.4 a retry: 0.25, 0.6, 1.5, 3.6,
# 9, 21 s), so a short first delay costs a transient fault little while six retries still wait ~36 s
# in all for a server that says "slow down". Measured through the integration suite's proxy
# (deploy/private-catalog/README.md, "Network faults"): with 10 % of the reads' requests failing,
# a first delay of 1 s made the run 3.6x the clean one, 0.25 s 2.2x.
HTTP_MAX_RETRY = 6
HTTP_RETRY_DELAY_S = 0.25

SCENE_READ_ENV = DEFAULT_GDAL_ENV.updated(
    always=dict(
        GDAL_CACHEMAX=GDAL_CACHE_BYTES,
        GDAL_HTTP_MAX_RETRY=HTTP_MAX_RETRY,
        GDAL_HTTP_RETRY_DELAY=HTTP_RETRY_DELAY_S,
    )
)


def scene_read_env(profile: ProviderProfile, kind: str) -> LayeredEnv:
    """SCENE_READ_ENV plus the provider's object-storage settings for `kind` (providers.yaml `gdal_env`).

    E.g. Earth Search's DEM is `s3://copernicus-dem-30m/` (public: unsigned requests, else GDAL
    looks for credentials and fails) and its Landsat `s3://usgs-landsat/` (requester pays).
    """
    extra = profile.gdal_env.get(kind)
    return _layered(tuple(sorted(extra.items()))) if extra else SCENE_READ_ENV


@cache
def _layered(extra: tuple[tuple[str, str], ...]) -> LayeredEnv:
    # One object per setting: the reflectance and quality cubes then tokenize the same, and share reads.
    return SCENE_READ_ENV.updated(always=dict(extra))


AWS_CREDENTIALS_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or ~/.aws/credentials; "
                        "requests are billed to that account)")
"""What both requester-pays refusals (a provider's own catalog, any catalog's items) tell the user to set."""


class ObjectStorageError(ProviderError):
    """Object storage a run would read cannot be read as configured; the message says what to set."""


ROLE_VARIABLES = ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                  "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ROLE_ARN")
"""Environment an AWS role sets (EKS service accounts and pod identity, ECS tasks): credentials GDAL gets
from a token or an endpoint, not a key pair. An EC2 instance profile sets nothing: set AWS_PROFILE or
AWS_ROLE_ARN there (a check without the network cannot ask the instance)."""


def _aws_credentials_configured(environ: Mapping[str, str], home: Path) -> bool:
    """AWS credentials GDAL can find: the key pair in the environment, a profile, a role's environment,
    or a credentials or config file that holds keys, a role, SSO or a credential process."""
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        return True
    if environ.get("AWS_PROFILE") or environ.get("AWS_DEFAULT_PROFILE") or any(environ.get(v) for v in ROLE_VARIABLES):
        return True
    credentials = Path(environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
    if credentials.is_file() and "aws_access_key_id" in credentials.read_text(errors="replace").lower():
        return True
    config = Path(environ.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
    held = config.read_text(errors="replace").lower() if config.is_file() else ""
    return any(key in held for key in ("role_arn", "sso_", "credential_process", "credential_source", "aws_access_key_id"))


def check_object_storage(
    profile: ProviderProfile, kind: str, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> None:
    """Refuse, before any work, reads that need what is not there (no network: looks at settings only).

    A requester-pays bucket (`AWS_REQUEST_PAYER: requester` in the profile's gdal_env, e.g. Earth
    Search's Landsat in s3://usgs-landsat) bills the reader, so every request must be signed with
    AWS credentials; without them each scene would fail as "unreadable" one by one.
    """
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    env = profile.gdal_env.get(kind, {})
    if str(env.get("AWS_REQUEST_PAYER", "")).lower() == "requester" and not _aws_credentials_configured(environ, home):
        raise ObjectStorageError(
            f"provider {profile.name!r} serves {kind} ({profile.collections.get(kind, '?')}) from a requester-pays "
            f"S3 bucket and no AWS credentials are configured: {AWS_CREDENTIALS_HINT}, "
            f"or use provider planetary-computer for {kind} (signed https, no AWS account)"
        )


def check_requester_pays(items, keys, kind: str, environ: Mapping[str, str] | None = None, home: Path | None = None) -> None:
    """Refuse items whose assets say they lie in a requester-pays bucket (the STAC storage extension,
    `_requester_pays`) when no AWS credentials are configured.

    `check_object_storage` judges a provider's own catalog; a catalog at another URL (a mirror of Earth
    Search, a private pgstac) may serve the same s3://usgs-landsat hrefs, and then every scene failed one by
    one as 'unreadable' in a multi-kilobyte message (a helper's run). The items themselves say so.
    """
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    paying = [i for i in items if any(_requester_pays(i, i.assets[k]) for k in keys if k in i.assets)]
    if paying and not _aws_credentials_configured(environ, home):
        href = next(i.assets[k].href for i in paying[:1] for k in keys if k in i.assets)
        raise ObjectStorageError(
            f"{len(paying)} {kind} items (e.g. {paying[0].id}, {href.rsplit('/', 1)[0]}/...) say their assets lie in a "
            f"requester-pays bucket (storage:requester_pays) and no AWS credentials are configured: {AWS_CREDENTIALS_HINT}, "
            "or use a catalog whose assets need no account (provider planetary-computer)"
        )


def _requester_pays(item, asset) -> bool:
    """Whether the storage extension says `asset` lies in a requester-pays bucket: v1's
    ``storage:requester_pays`` (asset or item), or v2's ``storage:schemes`` named by the asset's
    ``storage:refs`` (pystac migrates v1 items to v2 when it reads them)."""
    if asset.extra_fields.get("storage:requester_pays", item.properties.get("storage:requester_pays")) is True:
        return True
    schemes = item.properties.get("storage:schemes") or {}
    refs = asset.extra_fields.get("storage:refs") or list(schemes)
    return any(isinstance(schemes.get(ref), dict) and schemes[ref].get("requester_pays") is True for ref in refs)
