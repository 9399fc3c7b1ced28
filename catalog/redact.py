"""Credentials out of anything a person or a file will see: hrefs, error messages, provenance.

Signed asset hrefs (Planetary Computer SAS tokens, S3 presigned URLs, GCS signed URLs) carry
their credential in the query string, and GDAL quotes the href it failed to open in its error
messages; object-store keys and tokens live in the environment, where a library may echo them.
`redact` is applied where such text leaves the catalog code (skipped scenes, unreadable-COG
errors), so provenance, reports, logs and tracebacks never hold a usable credential while the
href stays recognisable (path kept, signature replaced by ``REDACTED``).

What counts as a credential: the userinfo of a URL (``https://user:password@host``), query
parameters whose names carry one (``password``, ``token``, ``api-key``, ``sig``, the ``se``/``sv``
of SAS tokens, ``X-Amz-*``, ...), header-like ``Authorization: Bearer ...`` text, and the values
of environment variables that hold secrets. `RedactingConsole` is the rich Console the command
line prints through, so console output, tables and error messages pass `redact` on their way out.

Environment variables are read here, and only here, for their *values*, so that they can be
removed; nothing else is done with them.
"""

from __future__ import annotations

import logging
import os
import re

from rich.console import Console
from rich.text import Text

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
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "client_secret",
        "refresh_token",
        "id_token",
        "auth",
        "api-key",
        "x-api-key",
        "ocp-apim-subscription-key",
        "credential",
        "credentials",
        # Azure SAS: the signature's fields (expiry, version, permissions, start, signed key ...)
        "se",
        "sv",
        "sp",
        "st",
        "skoid",
        "sktid",
        "skt",
        "ske",
        "sks",
        "skv",
        "saoid",
        "suoid",
    }
)
# Prefixes and fragments of parameter names that always carry a credential.
SECRET_PREFIXES = ("x-amz-", "x-goog-")
_SECRET_NAME = re.compile(r"password|passwd|secret|token|api[-_]?key|credential|signature", re.IGNORECASE)

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
    "EARTHDATA_PASSWORD",
    "GDAL_HTTP_HEADERS",
    "AZURE_STORAGE_ACCOUNT_KEY",
)
# Other variables whose *names* say they hold a secret (GITHUB_TOKEN, MY_API_KEY, ...); names
# ending in _PATH/_FILE/_DIR/_SOCK hold where a secret lives, not the secret.
_SECRET_ENV_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL|USERPWD|BEARER")
_NOT_SECRET_ENV_NAME = re.compile(r"_(PATH|FILE|DIR|SOCK|URL)$")
_MIN_SECRET_LEN = 6  # shorter values would mask ordinary words

# name=value pairs inside a query string (after ? or &), the value up to the next & # whitespace,
# quote, bracket, comma or semicolon, or a colon that ends a phrase ("...?sig=abc: No such file");
# a colon inside a value (an unencoded SAS time, a password) is part of it
_PARAM = re.compile(r"(?P<lead>[?&])(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>(?:[^&#\s'\"\])}>,;:]|:(?![\s'\"]|$))*)")
# scheme://userinfo@ : everything between the scheme and the last @ before the host's path
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s'\"<>]+)@")
# header-like text: "Authorization: Bearer abc", {'x-api-key': 'abc'}, api-key=abc outside a URL
_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization|\bx-api-key|\bapi[-_]?key|\bocp-apim-subscription-key|\bx-amz-security-token)"
    r"(?P<sep>['\"]?\s*[:=]\s*['\"]?)(?P<scheme>(?:bearer|basic|token|digest)\s+)?(?P<value>[^\s'\",;:}&]+)",
    re.IGNORECASE,
)


def is_secret_parameter(name: str) -> bool:
    """True when a query parameter called `name` carries (part of) a credential."""
    lower = name.lower()
    return lower in SECRET_PARAMETERS or lower.startswith(SECRET_PREFIXES) or bool(_SECRET_NAME.search(lower))


def _secret_names() -> list[str]:
    named = [n for n in os.environ if _SECRET_ENV_NAME.search(n.upper()) and not _NOT_SECRET_ENV_NAME.search(n.upper())]
    return [*SECRET_ENVIRONMENT, *named]


_cache: dict[str, tuple] = {}  # redact runs per table cell of a report: read the environment cheaply


def _secret_values() -> list[str]:
    keys = tuple(os.environ)
    if _cache.get("keys") != keys:
        _cache["keys"], _cache["names"] = keys, tuple(_secret_names())
    current = tuple(os.environ.get(name, "") for name in _cache["names"])
    if _cache.get("current") == current:
        return list(_cache["values"])
    values = []
    for value in current:
        if len(value) >= _MIN_SECRET_LEN:
            values.append(value)
            stripped = value.lstrip("?")  # SAS tokens are often stored with their leading "?"
            if stripped != value and len(stripped) >= _MIN_SECRET_LEN:
                values.append(stripped)
    _cache["current"], _cache["values"] = current, tuple(sorted(set(values), key=len, reverse=True))
    return list(_cache["values"])


def redact(text: str) -> str:
    """`text` with URL userinfo, credential-like query parameters and headers, and secret
    environment values replaced by REDACTED (the rest of each URL kept, so it stays recognisable)."""
    if not text:
        return text

    def param(match: re.Match) -> str:
        if match["value"] and is_secret_parameter(match["name"]):
            return f"{match['lead']}{match['name']}={MASK}"
        return match.group(0)

    def header(match: re.Match) -> str:
        if match["value"] == MASK:
            return match.group(0)
        return f"{match['name']}{match['sep']}{match['scheme'] or ''}{MASK}"

    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", str(text))
    text = _PARAM.sub(param, text)
    text = _HEADER.sub(header, text)
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


class RedactingConsole(Console):
    """A rich Console whose every output passes `redact`, and which reads no markup by default.

    Strings are redacted before rich styles them (`render_str`: print, table cells, rules,
    progress descriptions) and the rendered text once more before it is written, so a URL in a
    Text object is caught too. Markup is off unless a call asks for it (``markup=True``): error
    messages quote bboxes, keys and paths in ``[...]``, which rich would otherwise take for
    style tags and drop.
    """

    def __init__(self, *args, markup: bool = False, **kwargs) -> None:
        super().__init__(*args, markup=markup, **kwargs)

    def render_str(self, text: str, **kwargs) -> Text:
        return super().render_str(redact(text), **kwargs)

    def _render_buffer(self, buffer) -> str:
        return redact(super()._render_buffer(buffer))
