"""Signed asset links that outlive their token: signed again just before they are read.

Planetary Computer's asset hrefs are Azure Blob Storage URLs signed with a SAS token when the
scenes are searched (`catalog.providers`, signing "planetary-computer"); the token expires (its
``se`` query parameter; 45 minutes, microsoft/PlanetaryComputer#388). A run reads a region unit
by unit from that one search, so a long run read with expired links: HTTP 403, and under
``on_unreadable: skip`` whole years came out empty (a helper's run against a server that turned
403 after the scene check). Each read now takes `fresh_link(href)`: the href itself while its
token has more than `MARGIN_S` left, else the same blob signed again (planetary-computer's token
cache: one token request per storage container and token life, made on the worker that reads;
signing just before the read is what users of long Planetary Computer jobs settled on, #418).
Links that carry no SAS expiry (Earth Search, local files, other clouds) pass unchanged.
"""

from __future__ import annotations

import datetime as dt
import time
from urllib.parse import parse_qs, urlparse, urlunparse

BLOB_DOMAIN = ".blob.core.windows.net"
MARGIN_S = 600.0
"""Seconds a token must still have when a read starts: a window's range requests, and a chunk's
reads under faults and retries, finish well within it."""


def sas_expiry(url: str) -> float | None:
    """The POSIX time an Azure SAS link expires (its ``se``), None for any other link or one without it."""
    parsed = urlparse(url)
    if not parsed.netloc.endswith(BLOB_DOMAIN):
        return None
    expiry = parse_qs(parsed.query).get("se")
    if not expiry:
        return None
    try:
        return dt.datetime.fromisoformat(expiry[0].replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def fresh_link(url: str, now: float | None = None) -> str:
    """`url`, signed again where it is a SAS link with less than `MARGIN_S` left (module doc).

    Without the planetary-computer package, or where a new token cannot be had (the token service
    unreachable), the link is returned as it is: the read then fails as it would have, naming the href.
    """
    expiry = sas_expiry(url)
    if expiry is None or expiry - (time.time() if now is None else now) > MARGIN_S:
        return url
    try:
        import planetary_computer
    except ImportError:
        return url
    unsigned = urlunparse(urlparse(url)._replace(query=""))
    try:
        return planetary_computer.sign_url(unsigned)
    except Exception:  # noqa: BLE001 - any failure to re-sign leaves the read to fail on the old link, by name
        return url
