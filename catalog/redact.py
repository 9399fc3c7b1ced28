"""Credentials out of anything a person or a file will see: hrefs, error messages, provenance.

Signed asset hrefs (Planetary Computer SAS tokens, S3 presigned URLs, GCS signed URLs) carry
their credential in the query string, and GDAL quotes the href it failed to open in its error
messages; object-store keys and tokens live in the environment, where a library may echo them.
`redact` is applied where such text leaves the catalog code (skipped scenes, unreadable-COG
errors), so provenance, reports, logs and tracebacks never hold a usable credential while the
href stays recognisable (path kept, signature replaced by ``REDACTED``).

Environment variables are read here, and only here, for their *values*, so that they can be
removed; nothing else is done with them.
"""

from __future__ import annotations

import logging
import os
import re

MASK = "REDACTED"

# Query parameters that carry (part of) a credential: Azure SAS (sig, plus skoid/sktid... which
# are harmless but travel with it), S3 presigned v2/v4, GCS signed URLs, generic tokens and keys.
SECRET_PARAMETERS = frozenset(
    {
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "awsaccesskeyid",
        "token",
        "access_token",
        "sas",
        "key",
        "api_key",
        "apikey",
        "subscription-key",
        "code",
    }
)

# Environment variables whose values are secrets (object stores, Planetary Computer, GDAL).
SECRET_ENVIRONMENT = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET",
    "PC_SDK_SUBSCRIPTION_KEY",
    "GS_SECRET_ACCESS_KEY",
    "GS_ACCESS_KEY_ID",
    "GOOGLE_APPLICATION_CREDENTIALS_JSON",
    "GDAL_HTTP_USERPWD",
    "GDAL_HTTP_BEARER",
    "EARTHDATA_TOKEN",
)
_MIN_SECRET_LEN = 6  # shorter values would mask ordinary words

# name=value pairs inside a query string (after ? or &), the value up to the next & # whitespace,
# quote, bracket, comma, colon or semicolon (URL-encoded values hold none of them)
_PARAM = re.compile(r"(?P<lead>[?&])(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&#\s'\"\])}>,;:]*)")


def _secret_values() -> list[str]:
    values = []
    for name in SECRET_ENVIRONMENT:
        value = os.environ.get(name, "")
        if len(value) >= _MIN_SECRET_LEN:
            values.append(value)
            stripped = value.lstrip("?")  # SAS tokens are often stored with their leading "?"
            if stripped != value and len(stripped) >= _MIN_SECRET_LEN:
                values.append(stripped)
    return sorted(set(values), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with signature-like query parameters and secret environment values replaced by REDACTED."""
    if not text:
        return text

    def param(match: re.Match) -> str:
        if match["name"].lower() in SECRET_PARAMETERS:
            return f"{match['lead']}{match['name']}={MASK}"
        return match.group(0)

    text = _PARAM.sub(param, str(text))
    for value in _secret_values():
        text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (attach it to a handler).

    GDAL and rasterio log every href they open at DEBUG/INFO ("Dataset <open DatasetReader
    name='...?sig=...'>", "GDAL signalled an error: ... .tif?sig=...") and those records are
    formatted by whatever handler shows them: a handler with this filter shows them redacted.
    Nothing here is installed by itself; warnings and errors of glacierwatch's own code are
    redacted where they are made.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
