"""URL normalisation: one spelling per page, so the same page sent twice is recognised."""

from __future__ import annotations

import contextlib
import re
import string
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

# Parameters that identify a click or campaign, never the page. Matched case-insensitively.
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "mc_cid", "mc_eid",
    "_ga", "_gl", "ocid", "cmpid", "smid", "sr_share", "share", "ref_src", "ref_url", "ito", "ns_mchannel",
    "ns_source", "ns_campaign", "ns_linkname", "ns_fee", "spm", "guccounter", "guce_referrer",
    "guce_referrer_sig", "__twitter_impression", "s_kwcid", "mkt_tok", "vero_id", "oly_enc_id", "oly_anon_id",
})
TRACKING_PREFIXES = ("utm_", "pk_", "hsa_", "at_")
DEFAULT_PORTS = {"http": "80", "https": "443"}
UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def normalise_url(url: str) -> str:
    """Return a canonical spelling of an http(s) URL.

    Lower-cases the scheme and host, drops the default port, ``www.``-less hosts are kept as
    they are (``www.x.com`` and ``x.com`` may be different sites), removes the fragment and
    tracking parameters, sorts the remaining query parameters and normalises percent-escapes.

    >>> normalise_url("HTTPS://News.Example.com:443/a/b?utm_source=x&id=7&fbclid=y#top")
    'https://news.example.com/a/b?id=7'
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    with contextlib.suppress(UnicodeError):  # not valid IDNA: keep the lower-cased form, don't reject
        host = host.encode("idna").decode("ascii").rstrip(".")  # IDNA turns "。" into a dot: strip it too
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    port = parts.port if _has_valid_port(parts) else None
    netloc = host if port is None or str(port) == DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = _normalise_escapes(parts.path) or "/"
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not _is_tracking(key)
    ]
    return urlunsplit((scheme, netloc, path, urlencode(sorted(query)), ""))


def _normalise_escapes(path: str) -> str:
    """Decode escapes of unreserved characters only (RFC 3986 6.2.2.2), upper-case the rest, and
    escape what must be escaped; so "%7E" and "~" agree, while "%2F" stays distinct from "/"."""
    def decode(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in UNRESERVED else f"%{match.group(1).upper()}"

    # A "%" that starts no escape is a literal percent sign: escape it first, or decoding once
    # could form a new escape ("%%341" -> "%41") and a second pass would change the URL again.
    path = _STRAY_PERCENT.sub("%25", path)
    return quote(_ESCAPE.sub(decode, path), safe="/:@!$&'()*+,;=-._~%")


def _is_tracking(key: str) -> bool:
    key = key.lower()
    return key in TRACKING_PARAMS or key.startswith(TRACKING_PREFIXES)


def _has_valid_port(parts: object) -> bool:
    try:
        return parts.port is not None
    except ValueError:  # a port that is not a number: ignore it
        return False
