"""Signed asset links that outlive their token: signed again just before they are read.

Planetary Computer's asset hrefs are Azure Blob Storage URLs signed with a SAS token when the
scenes are searched (`catalog.providers`, signing "planetary-computer"); the token expires (its
``se`` query parameter; 45 minutes, microsoft/PlanetaryComputer#388). A run reads a region unit
by unit from that one search, so a long run read with expired links: HTTP 403, and under
``on_unreadable: skip`` whole years came out empty (a helper's run against a server that turned
403 after the scene check). Each read now takes `fresh_link(href)`: the href itself while its
token has more than `MARGIN_S` left (`expiring`), else the same blob signed again on the worker
that reads (signing just before the read is what users of long Planetary Computer jobs settled
on, #418). planetary-computer's own cache renews a token only when it has under a minute left, so
tokens with less than `MARGIN_S` are dropped from it first. Where no token can be had (the token
service down) the old link is kept and no new one is asked for `RETRY_AFTER_S`: a read is not held
up by the service's retries each time. Links without a SAS expiry (Earth Search, local files,
other clouds) pass unchanged. A reader holding a dataset opened with an expiring link closes it
(`catalog.reads.ExplainingRioReader`).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from urllib.parse import parse_qs, urlparse, urlunparse

BLOB_DOMAIN = ".blob.core.windows.net"
MARGIN_S = 600.0
"""Seconds a token must still have when a read starts: a window's range requests, and a chunk's
reads under faults and retries, finish well within it."""
RETRY_AFTER_S = 60.0
"""After a failed signing, how long links are used as they are before a new token is asked for."""

_failed_at = -float("inf")
_lock = threading.Lock()


def sas_expiry(url: str) -> float | None:
    """The POSIX time an Azure SAS link expires (its ``se``), None for any other link or one without it."""
    parsed = urlparse(url)
    if not parsed.netloc.endswith(BLOB_DOMAIN):
        return None
    expiry = parse_qs(parsed.query).get("se")
    if not expiry:
        return None
    try:
        return dt.datetime.fromisoformat(expiry[0]).timestamp()  # "Z" read as UTC (Python 3.11)
    except ValueError:
        return None


def expiring(url: str, now: float | None = None) -> bool:
    """Whether `url` is a SAS link with less than `MARGIN_S` left."""
    expiry = sas_expiry(url)
    return expiry is not None and expiry - (time.time() if now is None else now) <= MARGIN_S


def fresh_link(url: str, now: float | None = None) -> str:
    """`url`, signed again where it is `expiring` (module doc); as it is without the planetary-computer
    package or a token (the read then fails as it would have, naming the href)."""
    global _failed_at
    now = time.time() if now is None else now
    if not expiring(url, now) or now - _failed_at < RETRY_AFTER_S:
        return url
    try:
        import planetary_computer
    except ImportError:
        return url
    unsigned = urlunparse(urlparse(url)._replace(query=""))
    try:
        with _lock:
            signed = planetary_computer.sign_url(unsigned)
            if expiring(signed, now):  # the package's cache handed back a token about to expire: drop it, ask again
                _drop_expiring_tokens()
                signed = planetary_computer.sign_url(unsigned)
    except Exception:  # noqa: BLE001 - any failure to re-sign leaves the read to fail on the old link, by name
        _failed_at = now
        return url
    return signed


def _drop_expiring_tokens() -> None:
    """Remove planetary-computer's cached tokens with less than `MARGIN_S` left (its own rule: one minute)."""
    try:
        from planetary_computer.sas import TOKEN_CACHE
    except ImportError:
        return
    for key, token in list(TOKEN_CACHE.items()):
        try:
            if token.ttl() <= MARGIN_S:
                TOKEN_CACHE.pop(key, None)
        except (AttributeError, TypeError):  # another version's cache entries: leave them
            continue
