"""HTML -> main-content text (SkyPile "structural extraction"): charset, non-HTML rejection, boilerplate removal.

``extract_batch`` reads reader output (``RAW_DOC_SCHEMA``) and sets the ``EXTRACT_FIELDS`` (``text``,
``title``, ``charset``) plus the verdict columns, row for row:

* ``html`` rows: decode (BOM, HTTP charset, ``<meta charset>``, then uchardet detection), reject non-HTML
  payloads (``not_html: application/pdf``), extract the main content with paragraph breaks as ``"\\n"``
  (one paragraph per line, no blank lines), and the ``<title>``;
* ``text`` rows (JSONL/Parquet text inputs) keep their text; ``title`` and ``charset`` stay null;
* quarantined rows (``quarantine_reason`` set) pass through with no text and no verdict: they are
  accounted as quarantined, not rejected;
* rows that already carry a verdict keep it and are not processed;
* text shorter than ``min_text_chars`` is rejected ``empty: N chars < min``; a page that makes the parser
  throw is rejected ``extract_error: <ExceptionType>``. One bad page never fails the batch.

The ``html`` column is left in place (the stage contract only adds columns); a flow drops it once the
extracted text is kept.
"""

from __future__ import annotations

import codecs
import re

import pyarrow as pa

from skycurate.schemas.web import EXTRACT_FIELDS
from skycurate.schemas.web_extract import ExtractConfig
from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE, VERDICT_FIELDS
from skycurate.stages.base import BatchStage, with_columns

STAGE = "extract"

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "application/xhtml", "text/xhtml", "application/html"})
# Declared types that say nothing reliable: sniff the bytes instead.
UNSURE_TYPES = frozenset({"", "text/plain", "application/octet-stream", "binary/octet-stream", "unknown",
                          "unk", "application/unknown", "application/x-unknown", "text/unknown", "none",
                          "application/force-download", "application/x-download"})

# Magic numbers of binary formats a crawl meets as "HTML" (first bytes, then type).
_MAGIC = (
    (b"%PDF-", "application/pdf"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"), (b"\xff\xd8\xff", "image/jpeg"), (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"), (b"\x28\xb5\x2f\xfd", "application/zstd"), (b"BZh", "application/x-bzip2"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"), (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"%!PS", "application/postscript"), (b"\x7fELF", "application/x-executable"), (b"\x00asm", "application/wasm"),
    (b"OggS", "audio/ogg"), (b"ID3", "audio/mpeg"), (b"fLaC", "audio/flac"), (b"\x1a\x45\xdf\xa3", "video/webm"),
    (b"wOFF", "font/woff"), (b"wOF2", "font/woff2"), (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/msword"),
    (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"), (b"\x00\x00\x01\x00", "image/x-icon"),
)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_CT_CHARSET = re.compile(r"charset\s*=\s*[\"']?\s*([\w.:+-]+)", re.I)
_META_CHARSET = re.compile(rb"<meta[^>]{0,400}?charset\s*=\s*[\"']?\s*([\w.:+-]+)", re.I)
_MARKUP = re.compile(rb"<(?:!doctype\s+html|html|head|body|title|meta|div|p|article|section|table|span|a)[\s>/]",
                     re.I)
# Labels too weak to trust over valid UTF-8: servers send them as a default, not a statement.
_WEAK = frozenset({"cp1252", "latin-1", "iso8859-1", "ascii"})
# Decode with a superset codec, so that pages labelled with the narrower one decode completely.
_SUPERSET = {"gbk": "gb18030", "gb2312": "gb18030", "big5": "big5hkscs", "euc_kr": "cp949", "shift_jis": "cp932",
             "iso8859-1": "cp1252", "latin-1": "cp1252", "ascii": "cp1252"}


def _sniff_binary(data: bytes) -> str | None:
    head = data[:16]
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[4:8] == b"ftyp":
        return "video/mp4"
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}[head[8:12]]
    sample = data[:1024]
    if b"\x00" in sample and not any(data.startswith(b) for b, _ in _BOMS[1:]):
        return "application/octet-stream"
    return None


def html_verdict(content_type: str | None, data: bytes) -> str | None:
    """None if ``data`` should be treated as HTML, else the ``not_html: <type>`` reason."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    sniffed = _sniff_binary(data)
    if sniffed:
        return f"not_html: {sniffed}"
    if mime in HTML_TYPES:
        return None
    if mime in UNSURE_TYPES:
        return None if _MARKUP.search(data[:65536]) else f"not_html: {mime or 'text/plain'}"
    return f"not_html: {mime}"


def _label(name: str | bytes | None) -> str | None:
    """A charset label -> canonical Python codec name (WHATWG mapping), or None when unknown."""
    from resiliparse.parse.encoding import map_encoding_to_html5

    if not name:
        return None
    if isinstance(name, bytes):
        name = name.decode("ascii", "ignore")
    mapped = map_encoding_to_html5(name.strip(), fallback_utf8=False)
    if not mapped:
        return None
    try:
        return codecs.lookup(mapped).name
    except LookupError:
        return None


def _try(data: bytes, label: str | None) -> str | None:
    if not label:
        return None
    try:
        return data.decode(_SUPERSET.get(label, label))
    except (UnicodeDecodeError, LookupError):
        return None


def decode_html(data: bytes, content_type: str | None) -> tuple[str, str]:
    """(text, charset): BOM, then the HTTP charset, then ``<meta charset>``, then detection (uchardet).

    A label must decode the bytes without error to win. Single-byte "default" labels (ISO-8859-1,
    windows-1252, ASCII) are only trusted after valid UTF-8 has been ruled out.
    """
    from resiliparse.parse.encoding import detect_encoding

    for bom, name in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(name, "replace"), name.replace("-le", "").replace("-be", "")
    m = _CT_CHARSET.search(content_type or "")
    header = _label(m.group(1)) if m else None
    m = _META_CHARSET.search(data[:4096])
    meta = _label(m.group(1)) if m else None
    if meta and meta.startswith("utf-16"):  # a page we could read as ASCII cannot be UTF-16
        meta = "utf-8"
    weak = []
    for label in (header, meta):
        if label in _WEAK:
            weak.append(label)
        elif (text := _try(data, label)) is not None:
            return text, label
    if (text := _try(data, "utf-8")) is not None:
        return text, "utf-8" if not data.isascii() or not weak else weak[0]
    for label in weak:
        if (text := _try(data, label)) is not None:
            return text, label
    detected = _label(detect_encoding(data, html5_compatible=True))
    if (text := _try(data, detected)) is not None:
        return text, detected
    label = header or meta or detected or "utf-8"
    return data.decode(_SUPERSET.get(label, label), "replace"), label


def _clean(text: str | None) -> str:
    """One paragraph per line: no blank lines, no trailing spaces, list bullets at the line start."""
    if not text:
        return ""
    lines = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line.strip():
            continue
        stripped = line.lstrip()
        lines.append(stripped if stripped.startswith(("\u2022 ", "- ")) else line)
    return "\n".join(lines)


def _one_line(title: str | None) -> str | None:
    title = " ".join(title.split()) if title else ""
    return title or None


# Pages nested deeper than this (broken markup, or hostile) get plain-text extraction instead of main-content.
MAX_DEPTH = 512
_TOO_DEEP = " > ".join(["*"] * MAX_DEPTH)


def _resiliparse(html: str, main_content: bool) -> tuple[str, str | None]:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    if main_content and html.count("<") > MAX_DEPTH and tree.document.query_selector(_TOO_DEEP) is not None:
        main_content = False  # its main-content heuristics are quadratic in nesting depth: do not stall the task
    text = extract_plain_text(tree, preserve_formatting=True, main_content=main_content, list_bullets=True,
                              alt_texts=False, links=False, form_fields=False, noscript=False, comments=False)
    return _clean(text), _one_line(tree.title)


_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.I | re.S)


def _html_title(html: str) -> str | None:
    """The ``<title>`` element's text (the same for every engine)."""
    import html as htmllib

    m = _TITLE.search(html, 0, 1 << 20)
    return _one_line(htmllib.unescape(m.group(1))) if m else None


def _trafilatura(html: str, main_content: bool) -> tuple[str, str | None]:
    import trafilatura

    if not main_content:
        return _clean(trafilatura.html2txt(html)), _html_title(html)
    doc = trafilatura.bare_extraction(html, include_comments=False, include_tables=True, with_metadata=False)
    return _clean(doc.text if doc is not None else ""), _html_title(html)


ENGINES = {"resiliparse": _resiliparse, "trafilatura": _trafilatura}


def extract_html(data: bytes, content_type: str | None, cfg: ExtractConfig) -> tuple[str, str | None, str]:
    """(text, title, charset) of one HTML payload that passed ``html_verdict``; may raise on a hostile page."""
    html, charset = decode_html(data, content_type)
    text, title = ENGINES[cfg.engine](html, cfg.main_content)
    if cfg.keep_title and title and not text.startswith(title):
        text = f"{title}\n{text}" if text else title
    return text, title, charset


def _strings(values: list[str | None]) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except (UnicodeEncodeError, pa.ArrowInvalid):  # a lone surrogate slipped through: replace it
        return pa.array([v.encode("utf-8", "replace").decode("utf-8") if v is not None else None for v in values],
                        pa.string())


def _column(batch: pa.RecordBatch, name: str, n: int) -> list:
    i = batch.schema.get_field_index(name)
    return batch.column(i).to_pylist() if i >= 0 else [None] * n


def extract_batch(batch: pa.RecordBatch, cfg: ExtractConfig | None = None) -> pa.RecordBatch:
    """Add ``text``/``title``/``charset`` and the verdict columns to a ``RAW_DOC_SCHEMA`` batch.

    Never raises because of one page: a page that breaks the parser is rejected ``extract_error``.
    """
    cfg = cfg or ExtractConfig()
    n = batch.num_rows
    htmls = _column(batch, "html", n)
    given = _column(batch, "text", n)
    ctypes = _column(batch, "content_type", n)
    quarantined = _column(batch, "quarantine_reason", n)
    stages = _column(batch, REJECT_STAGE, n)
    reasons = _column(batch, REJECT_REASON, n)
    old_titles = _column(batch, "title", n)
    old_charsets = _column(batch, "charset", n)
    texts, titles, charsets = [None] * n, [None] * n, [None] * n
    for i in range(n):
        if reasons[i] is not None:  # already rejected upstream: keep its first verdict, touch nothing
            texts[i], titles[i], charsets[i] = given[i], old_titles[i], old_charsets[i]
            continue
        if quarantined[i] is not None:
            continue
        if htmls[i] is not None:
            reason = html_verdict(ctypes[i], htmls[i])
            if reason is not None:
                stages[i], reasons[i] = STAGE, reason
                continue
            try:
                texts[i], titles[i], charsets[i] = extract_html(htmls[i], ctypes[i], cfg)
            except Exception as e:  # noqa: BLE001 - one hostile page must not fail the batch
                stages[i], reasons[i] = STAGE, f"extract_error: {type(e).__name__}"
                continue
        else:
            texts[i] = given[i]
        chars = len(texts[i].strip()) if texts[i] else 0
        if chars < cfg.min_text_chars:
            stages[i], reasons[i] = STAGE, f"empty: {chars} chars < {cfg.min_text_chars}"
    columns = {
        "text": _strings(texts),
        "title": _strings(titles),
        "charset": pa.array(charsets, pa.string()),
        REJECT_STAGE: pa.array(stages, pa.string()),
        REJECT_REASON: pa.array(reasons, pa.string()),
    }
    return with_columns(batch, columns)


EXTRACT = BatchStage(
    name=STAGE,
    fn=extract_batch,
    requires=("html", "text", "content_type"),
    adds=(*EXTRACT_FIELDS, *VERDICT_FIELDS),
)
