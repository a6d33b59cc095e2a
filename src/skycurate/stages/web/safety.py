"""Safety and privacy: blocked domains/URLs, blocklisted keywords, and masking of personal data.

Annotate, then filter. ``safety_batch`` masks personal data in ``text`` and adds the signal
columns (PII counts, ``blocked_url``, ``blocked_keywords``); ``safety_verdicts`` turns the
signals into reject verdicts. Lists are plain text files, read and compiled once per process
(Spark Python workers are long-lived) and re-read when the file changes.

URL blocklist entries (one a line, '#' starts a comment line):
  ``example.com``       a host name: blocks example.com and every subdomain (a.example.com), not notexample.com
  ``.xxx`` / ``*.xxx``  a domain suffix, also one without a dot (a top-level domain)
  ``/casino/``, ``porn`` anything else: a case-insensitive substring of the URL

Keyword blocklist: one keyword a line, matched case-insensitively (lower-cased) with one
Aho-Corasick automaton. Chinese has no spaces, so CJK keywords match anywhere; a keyword that
starts (ends) with an ASCII letter or digit must start (end) at a word boundary, so "ass" does
not hit "class". Overlapping hits count once (longest match first).

Personal data, masked in this order (precompiled regexes, ASCII classes only, because Python's
``\\w``/``\\d`` would treat CJK characters and full-width digits as word characters):
  e-mail    ``name@host.tld``                                    -> <EMAIL>
  IPv4      four valid octets (0-255, no leading zeros), not part of a longer dotted number,
            not after "version"/"版本"; only globally routable addresses: private, loopback,
            link-local, reserved and documentation ranges (192.168.1.1, 127.0.0.1,
            255.255.255.0) identify nobody and are kept for technical text      -> <IP>
  phone     Chinese mobiles 1[3-9]x xxxx xxxx (optional +86/0086/86/(+86), space or '-' groups);
            '+' international numbers with 8-15 digits (E.164) in groups; Chinese landlines with
            a separated area code (010-12345678, (021) 2345 6789); North American numbers with
            '-'/'.' separators or a bracketed area code ((415) 555-2671, 415-555-2671,
            1-800-555-0199; not "250 300 2000", more often a row of numbers)      -> <PHONE>
Not masked: numbers without a phone's shape. A run of digits is only a phone when it is a whole
Chinese mobile (exactly 11 digits 1[3-9]..., not inside a longer run) or carries separators
in a phone's grouping, so years, prices (¥12,800, $1,299.00), dates, version numbers (1.2.3),
ISBNs (978-7-115-54608-1) and long order numbers (2023081513800138000) stay. An 11-digit
number 13800138000 on its own is indistinguishable from a mobile and is masked.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from skycurate.connectors.web_readers import url_domain
from skycurate.errors import ConfigError
from skycurate.schemas.web_annotate import SafetyConfig
from skycurate.stages.accounting import VERDICT_FIELDS, add_verdicts, keep_where_skipped, pending_rows
from skycurate.stages.base import BatchStage, require_columns, with_columns

STAGE = "safety"
SAFETY_FIELDS = (
    pa.field("pii_emails", pa.int32()),
    pa.field("pii_phones", pa.int32()),
    pa.field("pii_ips", pa.int32()),
    pa.field("blocked_url", pa.bool_()),
    pa.field("blocked_keywords", pa.int32()),
)
MASKS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP>"}


# --- lists ----------------------------------------------------------------------------------

def load_list(path: str | os.PathLike) -> list[str]:
    """Non-empty, stripped lines of a UTF-8 list file; lines starting with '#' are comments."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"list file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"list file {path} is a folder, not a file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"list file {path} is not UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"cannot read list file {path}: {e.strerror or e}") from None
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


_CACHE: dict[tuple[str, str], tuple[tuple[int, int], Any]] = {}
_CACHE_LOCK = threading.Lock()


def _cached(kind: str, path: str, build: Callable[[list[str]], Any]) -> Any:
    """``build(load_list(path))``, once per process, file and file version (mtime, size)."""
    key = (kind, os.path.abspath(path))
    try:
        st = os.stat(key[1])
        version = (st.st_mtime_ns, st.st_size)
    except OSError:
        version = (-1, -1)  # load_list raises the clear error
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    with _CACHE_LOCK:
        value = build(load_list(path))
        _CACHE[key] = (version, value)
        return value


# --- URL blocklist --------------------------------------------------------------------------

_HOST = re.compile(r"^[^\s/:?#@*=&%\\]+\.[^\s/:?#@*=&%\\]+$")


@dataclass(frozen=True)
class UrlBlocklist:
    domains: frozenset[str]
    substrings: Any  # Aho-Corasick automaton over lower-cased URL substrings, or None

    def match(self, url: str | None, domain: str | None) -> tuple[str, str] | None:
        """("domain", entry) or ("url", entry) for the first matching entry, else None."""
        host = domain or url_domain(url)
        if host and self.domains:
            labels = host.lower().rstrip(".").split(".")
            for i in range(len(labels)):
                suffix = ".".join(labels[i:])
                if suffix in self.domains:
                    return "domain", suffix
        if url and self.substrings is not None:
            for _, entry in self.substrings.iter(url.lower()):
                return "url", entry
        return None




_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")


def parse_url_blocklist(entries: list[str]) -> UrlBlocklist:
    """Host names and domain suffixes become domain rules; everything else a URL substring."""
    domains, substrings = set(), set()
    for raw in entries:
        e = raw.lower()
        bare = _SCHEME.sub("", e).rstrip("/")  # "https://example.com/" is the domain example.com
        if bare.startswith(("*.", ".")) and _HOST.match("x" + bare.lstrip("*")) or _HOST.match(bare):
            domains.add(bare.lstrip("*").lstrip(".").removeprefix("www."))
        else:
            substrings.add(_SCHEME.sub("", e))
    return UrlBlocklist(frozenset(domains), _automaton({s: s for s in substrings}))


def url_blocklist(cfg: SafetyConfig) -> UrlBlocklist | None:
    return _cached("url", cfg.url_blocklist, parse_url_blocklist) if cfg.url_blocklist else None


# --- keyword blocklist ----------------------------------------------------------------------

def _automaton(words: dict[str, Any]) -> Any:
    if not words:
        return None
    import ahocorasick

    auto = ahocorasick.Automaton()
    for key, value in words.items():
        auto.add_word(key, value)
    auto.make_automaton()
    return auto


def _is_word_char(c: str) -> bool:
    return c.isascii() and c.isalnum()


def build_keyword_automaton(keywords: list[str]) -> Any:
    """Automaton of lower-cased keywords -> (length, needs start boundary, needs end boundary)."""
    words = {}
    for k in keywords:
        k = k.lower()
        words[k] = (len(k), _is_word_char(k[0]), _is_word_char(k[-1]))
    return _automaton(words)


def count_keywords(text: str | None, automaton: Any) -> int:
    """Blocklisted keyword occurrences in ``text`` (case-insensitive, whole words for ASCII keywords)."""
    if not text or automaton is None:
        return 0
    low = text.lower()
    n = 0
    for end, (length, start_b, end_b) in automaton.iter_long(low):
        start = end - length + 1
        if start_b and start > 0 and _is_word_char(low[start - 1]):
            continue
        if end_b and end + 1 < len(low) and _is_word_char(low[end + 1]):
            continue
        n += 1
    return n


def keyword_automaton(cfg: SafetyConfig) -> Any:
    return _cached("keywords", cfg.keyword_blocklist, build_keyword_automaton) if cfg.keyword_blocklist else None


# --- personal data --------------------------------------------------------------------------

# Not glued to a letter/digit/'+' before, nor continuing "-123"/".123" after (ASCII only: CJK may touch).
_PRE = r"(?<![0-9A-Za-z+])(?<![0-9][-.])"
_POST = r"(?![0-9A-Za-z]|[-.][0-9])"

EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])")

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
IPV4_RE = re.compile(rf"(?<![0-9A-Za-z.]){_OCTET}(?:\.{_OCTET}){{3}}(?![0-9A-Za-z]|\.[0-9])")
_VERSION_BEFORE = re.compile(r"(?:\b(?:version|ver\.?|release|build)|(?<![A-Za-z])v|版本号?)\s*[:：]?\s*$", re.IGNORECASE)

PHONE_RES = (
    # Chinese mobile: 1[3-9]x xxxx xxxx with an optional country prefix.
    re.compile(rf"{_PRE}(?:(?:\+|00)?86[ -]?|\(\+?86\)[ ]?)?1[3-9][0-9](?:[ -]?[0-9]{{4}}){{2}}{_POST}"),
    # International with '+': country code, then groups (digit count checked in code: 8..15).
    re.compile(rf"{_PRE}\+[1-9][0-9]{{0,2}}(?:[ .-]?\(?[0-9]{{1,4}}+\)?){{2,7}}{_POST}"),
    # Chinese landline with a separated area code: 010-12345678, (0755) 8888 6666.
    re.compile(rf"{_PRE}(?:\(0[1-9][0-9]{{1,2}}\)[ -]?|0[1-9][0-9]{{1,2}}[ -])[1-9][0-9]{{3}}[ -]?[0-9]{{3,4}}{_POST}"),
    # North American: (415) 555-2671, 415-555-2671, 415.555.2671, 1-800-555-0199. Not with plain
    # spaces only ("250 300 2000" is more often a row of numbers than a phone).
    re.compile(rf"{_PRE}(?:1[ .-]?)?(?:\([2-9][0-9]{{2}}\)[ ]?|[2-9][0-9]{{2}}[.-])[2-9][0-9]{{2}}[.-][0-9]{{4}}{_POST}"),
)
_LAST_GROUP = re.compile(r"[ .-]?\(?[0-9]{1,4}\)?$")


# Precise patterns start with lookbehinds, which makes Python's re try them at every position.
# A digit run is rare in text, so a cheap scan (a character-set prefix, fast in re) finds the
# runs that could hold an address or a phone, and the precise patterns only look there.
# Lookbehinds see before ``pos``; ``endpos`` is 2 past the run so lookaheads see real context.
_IP_CANDIDATE = re.compile(r"[0-9][0-9.]{5,}[0-9]")
_PHONE_CANDIDATE = re.compile(r"[0-9(+][0-9 ().+\-]{6,}[0-9]")


def _apply_spans(text: str, spans: list[tuple[int, int]], mask: str) -> str:
    if not spans:
        return text
    parts, last = [], 0
    for a, b in spans:
        parts.append(text[last:a])
        parts.append(mask)
        last = b
    parts.append(text[last:])
    return "".join(parts)


def _ip_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for cand in _IP_CANDIDATE.finditer(text):
        for m in IPV4_RE.finditer(text, cand.start(), min(len(text), cand.end() + 2)):
            if ipaddress.IPv4Address(m.group(0)).is_global and not _VERSION_BEFORE.search(
                    text, max(0, m.start() - 12), m.start()):
                spans.append(m.span())
    return spans


def _intl_end(m: re.Match) -> int | None:
    """End of an international number: groups glued on past 15 digits (E.164) dropped; None under 8 digits."""
    s = m.group(0)
    while sum(c.isdigit() for c in s) > 15:
        s = _LAST_GROUP.sub("", s)
    return m.start() + len(s) if sum(c.isdigit() for c in s) >= 8 else None


def _phone_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for cand in _PHONE_CANDIDATE.finditer(text):
        start, end = cand.start(), min(len(text), cand.end() + 2)
        found: list[tuple[int, int]] = []
        for i, rx in enumerate(PHONE_RES):  # in order: an earlier pattern's match wins
            for m in rx.finditer(text, start, end):
                a, b = m.start(), (_intl_end(m) if i == 1 else m.end())
                if b is not None and not any(a < fb and fa < b for fa, fb in found):
                    found.append((a, b))
        spans.extend(sorted(found))
    return spans


def _email_spans(text: str) -> list[tuple[int, int]]:
    """E-mails around each '@' (a local part has at most 64 characters, a domain at most 255)."""
    spans: list[tuple[int, int]] = []
    at = text.find("@")
    while at != -1:
        start = max(spans[-1][1] if spans else 0, at - 65)
        for m in EMAIL_RE.finditer(text, start, min(len(text), at + 258)):
            if m.start() < at < m.end():
                spans.append(m.span())
                break
        at = text.find("@", spans[-1][1] if spans and spans[-1][1] > at else at + 1)
    return spans


def _mask_emails(text: str, mask: str) -> tuple[str, int]:
    spans = _email_spans(text)
    return _apply_spans(text, spans, mask), len(spans)


def _mask_ips(text: str, mask: str) -> tuple[str, int]:
    spans = _ip_spans(text)
    return _apply_spans(text, spans, mask), len(spans)


def _mask_phones(text: str, mask: str) -> tuple[str, int]:
    spans = _phone_spans(text)
    return _apply_spans(text, spans, mask), len(spans)


_MASKERS = {"email": _mask_emails, "ip": _mask_ips, "phone": _mask_phones}
_ORDER = ("email", "ip", "phone")  # e-mails first: "13800138000@qq.com" is one e-mail, not a phone


def mask_pii(text: str, kinds: list[str] | tuple[str, ...] = _ORDER) -> tuple[str, dict[str, int]]:
    """(text with personal data replaced by <EMAIL>/<IP>/<PHONE>, occurrences per kind)."""
    counts = {}
    for kind in _ORDER:
        if kind in kinds:
            text, counts[kind] = _MASKERS[kind](text, MASKS[kind])
    return text, counts


# --- stage ----------------------------------------------------------------------------------

def safety_batch(batch: pa.RecordBatch, cfg: SafetyConfig) -> pa.RecordBatch:
    """Mask personal data in ``text`` and add the PII counts, ``blocked_url`` and ``blocked_keywords``.

    A kind not in ``cfg.pii_kinds`` has a null count. With ``mask_pii`` false the counts are
    computed and ``text`` is left as it is. Rows already rejected are not read (null signals).
    """
    require_columns(batch, STAGE, ("text", "url", "domain"))
    pending = pending_rows(batch)
    blocklist, keywords = url_blocklist(cfg), keyword_automaton(cfg)
    texts = batch.column("text").to_pylist()
    urls, domains = batch.column("url").to_pylist(), batch.column("domain").to_pylist()
    out_text, blocked, hits = list(texts), [], []
    counts: dict[str, list] = {k: [] for k in _ORDER}
    for i, (text, url, domain, p) in enumerate(zip(texts, urls, domains, pending)):
        if not p:
            blocked.append(None)
            hits.append(None)
            for k in _ORDER:
                counts[k].append(None)
            continue
        blocked.append(blocklist is not None and blocklist.match(url, domain) is not None)
        hits.append(count_keywords(text, keywords))
        masked, found = mask_pii(text or "", cfg.pii_kinds)
        for k in _ORDER:
            counts[k].append(found.get(k))
        if cfg.mask_pii and text is not None:
            out_text[i] = masked
    return with_columns(batch, {
        "text": pa.array(out_text, pa.string()),
        "pii_emails": keep_where_skipped(batch, "pii_emails", counts["email"], pending, pa.int32()),
        "pii_phones": keep_where_skipped(batch, "pii_phones", counts["phone"], pending, pa.int32()),
        "pii_ips": keep_where_skipped(batch, "pii_ips", counts["ip"], pending, pa.int32()),
        "blocked_url": keep_where_skipped(batch, "blocked_url", blocked, pending, pa.bool_()),
        "blocked_keywords": keep_where_skipped(batch, "blocked_keywords", hits, pending, pa.int32()),
    })


def safety_reason(url: str | None, domain: str | None, blocked: bool | None, hits: int | None,
                  cfg: SafetyConfig, blocklist: UrlBlocklist | None) -> str | None:
    if blocked:
        found = blocklist.match(url, domain) if blocklist is not None else None
        if found is None:
            return "blocked_url"
        kind, entry = found
        return f"blocked_domain: {entry}" if kind == "domain" else f"blocked_url: {entry}"
    if hits is not None and hits >= cfg.max_keyword_hits:
        return f"blocked_keywords: {hits} >= {cfg.max_keyword_hits}"
    return None


def safety_verdicts(batch: pa.RecordBatch, cfg: SafetyConfig) -> pa.RecordBatch:
    """Verdicts from the safety signals: reject_stage "safety", reason "blocked_domain: example.com",
    "blocked_url: /casino/" or "blocked_keywords: 2 >= 1"."""
    require_columns(batch, STAGE, ("url", "domain", "blocked_url", "blocked_keywords"))
    pending = pending_rows(batch)
    blocklist = url_blocklist(cfg)
    cols = (batch.column(c).to_pylist() for c in ("url", "domain", "blocked_url", "blocked_keywords"))
    reasons = [safety_reason(u, d, b, h, cfg, blocklist) if p else None
               for u, d, b, h, p in zip(*cols, pending)]
    return add_verdicts(batch, STAGE, reasons)


# ``text`` is rewritten (masked), so it is declared too: it moves behind the input columns.
SAFETY = BatchStage(name="safety", fn=safety_batch, requires=("text", "url", "domain"),
                    adds=(pa.field("text", pa.string()), *SAFETY_FIELDS))
SAFETY_FILTER = BatchStage(name="safety_filter", fn=safety_verdicts,
                           requires=("url", "domain", "blocked_url", "blocked_keywords"), adds=VERDICT_FIELDS)
