"""Signed links are signed again just before a read where their token is about to expire (catalog.signed_links)."""

from __future__ import annotations

import datetime as dt
import sys
import types

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window
from stackstac.raster_spec import RasterSpec

from catalog.reads import ExplainingRioReader, SceneReadError
from catalog.signed_links import MARGIN_S, fresh_link, sas_expiry

BLOB = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/44/T/NL/2021/08/15/B03.tif"
NOW = dt.datetime(2026, 8, 1, 12, 0, tzinfo=dt.UTC).timestamp()


def _signed(minutes_left: float) -> str:
    expiry = dt.datetime.fromtimestamp(NOW + 60 * minutes_left, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{BLOB}?st=2026-08-01T11%3A15%3A00Z&se={expiry.replace(':', '%3A')}&sp=rl&sv=2024-05-04&sr=c&sig=abc%3D"


@pytest.fixture(autouse=True)
def _no_failed_signing(monkeypatch):
    import catalog.signed_links

    monkeypatch.setattr(catalog.signed_links, "_failed_at", -float("inf"))


@pytest.fixture
def signer(monkeypatch):
    """planetary-computer's sign_url, faked: signs an unsigned blob link with a token valid 45 minutes from NOW."""
    calls = []

    def sign_url(url):
        calls.append(url)
        return _signed(45).replace(BLOB, url)

    monkeypatch.setitem(sys.modules, "planetary_computer", types.SimpleNamespace(sign_url=sign_url))
    return calls


def test_the_expiry_is_read_from_sas_links_only():
    assert sas_expiry(_signed(45)) == pytest.approx(NOW + 45 * 60)
    assert sas_expiry(BLOB) is None  # not signed
    assert sas_expiry("s3://sentinel-cogs/sentinel-s2-l2a-cogs/44/T/NL/B03.tif") is None
    assert sas_expiry("https://example.com/B03.tif?se=2026-08-01T12%3A00%3A00Z") is None  # not Azure blob storage
    assert sas_expiry(f"{BLOB}?se=tomorrow") is None


def test_a_link_near_its_expiry_is_signed_again_others_pass_unchanged(signer):
    fresh, old = _signed(30), _signed(MARGIN_S / 60 - 1)
    assert fresh_link(fresh, now=NOW) == fresh and signer == []
    renewed = fresh_link(old, now=NOW)
    assert signer == [BLOB]  # the blob, its old token taken off
    assert sas_expiry(renewed) == pytest.approx(NOW + 45 * 60)
    assert fresh_link(_signed(-5), now=NOW) != _signed(-5)  # expired already: signed again too
    for other in ("/data/B03.tif", "https://earth-search.example/B03.tif", "s3://bucket/B03.tif"):
        assert fresh_link(other, now=NOW) == other


def test_without_the_package_or_a_token_the_link_is_left_to_fail_by_name(monkeypatch):
    asked = []

    def unreachable(url):
        asked.append(url)
        raise ConnectionError("token service unreachable")

    monkeypatch.setitem(sys.modules, "planetary_computer", types.SimpleNamespace(sign_url=unreachable))
    assert fresh_link(_signed(1), now=NOW) == _signed(1)
    assert fresh_link(_signed(1), now=NOW + 30) == _signed(1) and len(asked) == 1  # not asked again for a minute
    fresh_link(_signed(1), now=NOW + 61)
    assert len(asked) == 2
    monkeypatch.setitem(sys.modules, "planetary_computer", None)  # not installed: import fails
    assert fresh_link(_signed(1), now=NOW) == _signed(1)


def _reader(url):
    spec = RasterSpec(epsg=32644, bounds=(0, 0, 100, 100), resolutions_xy=(10, 10))
    return ExplainingRioReader(url=url, spec=spec, resampling=Resampling.nearest, dtype=np.dtype("uint16"), fill_value=0,
                               scale_offset=(1, 0))


def test_a_reader_opens_its_asset_with_a_fresh_link_and_says_when_access_was_refused(signer, monkeypatch):
    """A chunk's readers open their assets when the chunk is read, maybe an hour after the search signed the hrefs."""
    import catalog.signed_links

    monkeypatch.setattr(catalog.signed_links.time, "time", lambda: NOW)
    reader = _reader(_signed(2))
    opened = []

    def refused(url, *args, **kwargs):
        opened.append(url)
        raise rasterio.errors.RasterioError(f"'/vsicurl/{url}' not recognized: HTTP response code: 403")

    monkeypatch.setattr(rasterio, "open", refused)
    with pytest.raises(SceneReadError) as failed:
        reader.read(Window(0, 0, 4, 4))
    assert opened and sas_expiry(opened[0]) == pytest.approx(NOW + 45 * 60)  # opened signed again
    assert "Access was refused" in str(failed.value) and "damage" not in str(failed.value)
    assert "abc" not in str(failed.value) and "sig=REDACTED" in str(failed.value)  # the message carries no token


def test_a_damaged_cog_whose_href_holds_403_is_not_taken_for_refused_access(monkeypatch):
    reader = _reader("/cogs/S2B_T44TNL_20240403_L2A/B03.tif")

    def damaged(url, *args, **kwargs):
        raise rasterio.errors.RasterioError(f"{url}: TIFFReadEncodedTile() failed.")

    monkeypatch.setattr(rasterio, "open", damaged)
    with pytest.raises(SceneReadError, match="damage lies inside the file"):
        reader.read(Window(0, 0, 4, 4))


def test_a_cached_token_about_to_expire_is_dropped_and_a_new_one_asked_for(monkeypatch):
    """planetary-computer renews a cached token only in its last minute: between MARGIN_S and that, signing
    handed back the same expiring link (found in review)."""
    import datetime as dt_

    class Token:
        def __init__(self, minutes):
            self.expiry = NOW + 60 * minutes

        def ttl(self):
            return self.expiry - NOW

    cache = {"sentinel2l2a01/sentinel2-l2": Token(5)}

    def sign_url(url):
        token = cache.setdefault("sentinel2l2a01/sentinel2-l2", Token(45))
        stamp = dt_.datetime.fromtimestamp(token.expiry, dt_.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{url}?se={stamp.replace(':', '%3A')}&sig=x"

    monkeypatch.setitem(sys.modules, "planetary_computer", types.SimpleNamespace(sign_url=sign_url))
    monkeypatch.setitem(sys.modules, "planetary_computer.sas", types.SimpleNamespace(TOKEN_CACHE=cache))
    assert sas_expiry(fresh_link(_signed(3), now=NOW)) == pytest.approx(NOW + 45 * 60)


def test_a_reader_closes_a_dataset_it_opened_with_a_link_about_to_expire(monkeypatch):
    """A warped asset's dataset (the DEM's, shared by every tile) is held for the run; its copies reopen the
    link they were made from. Held past its token it read with 403s (found in review): closed in time, the
    next read opens it with a fresh link."""
    import catalog.signed_links

    monkeypatch.setattr(catalog.signed_links.time, "time", lambda: NOW)
    closed = []
    reader = _reader(_signed(30))
    monkeypatch.setattr(reader, "close", lambda: closed.append(True))
    reader._opened_with = _signed(30)
    reader._renew_expiring()
    assert closed == [] and reader._opened_with == _signed(30)
    reader._opened_with = _signed(5)
    reader._renew_expiring()
    assert closed == [True] and reader._opened_with is None
