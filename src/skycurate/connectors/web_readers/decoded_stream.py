"""A seekable, never-raising ``read()``/``tell()`` stream over plain, gzip and zstd files.

Split from the readers because decompression with checkpoints (``_Checkpoints``: where gzip members
and zstd frames start, to reopen a stream near a decoded offset) and recovery from damaged gzip members
is a job of its own; the WARC reader reopens streams this way to resynchronise, and the JSONL reader
reads lines from one.
"""

from __future__ import annotations

import bisect
import zlib

import zstandard

from skycurate.connectors.web_readers.rows import _describe

_CHUNK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Checkpoints:
    """(decoded offset, raw offset) of gzip member / zstd frame starts, to reopen a stream near an offset."""

    def __init__(self) -> None:
        self.decoded: list[int] = [0]
        self.raw: list[int] = [0]

    def add(self, decoded: int, raw: int) -> None:
        if decoded > self.decoded[-1]:
            self.decoded.append(decoded)
            self.raw.append(raw)

    def before(self, at: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.decoded, at) - 1
        return self.decoded[i], self.raw[i]


class _DecodedStream:
    """``read()``/``tell()`` over a plain, gzip (multi-member) or zstd (multi-frame) file; codec from magic bytes.

    Unlike ``gzip.GzipFile`` it never raises on a damaged stream: it returns every byte that decoded
    cleanly, then EOF, and sets ``error`` ("truncated" or "corrupt"). With ``recover``, a corrupt gzip
    member is skipped instead (decoding goes on at the next member header) and its decoded offset noted
    in ``damage``, so that a WARC reader loses only the record it held. ``tell()`` is the offset in the
    decoded stream.
    """

    def __init__(self, path: str, at: int = 0, checkpoints: _Checkpoints | None = None, recover: bool = False):
        self._recover = recover
        self.damage: list[int] = []  # decoded offsets where a corrupt gzip member was skipped (``recover``)
        self._raw = open(path, "rb")
        try:
            head = self._raw.read(4)
        except OSError:
            self._raw.close()
            raise
        self.codec = "gzip" if head[:2] == _GZIP_MAGIC else "zstd" if head == _ZSTD_MAGIC else None
        self.error: str | None = None
        self.checkpoints = checkpoints if checkpoints is not None else _Checkpoints()
        self._buf = b""
        self._off = 0
        self._eof = False
        self._dec = None
        if self.codec is None:
            self._raw.seek(at)
            self._pos = at
        else:
            decoded, raw = self.checkpoints.before(at)
            self._raw.seek(raw)
            self._raw_pos = raw
            self._pos = self._produced = decoded
            self.skip(at - decoded)

    def __enter__(self) -> _DecodedStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def _new_decoder(self):
        return zlib.decompressobj(16 + zlib.MAX_WBITS) if self.codec == "gzip" else \
            zstandard.ZstdDecompressor().decompressobj()

    def _fill(self) -> None:
        try:
            chunk = self._raw.read(_CHUNK)
        except OSError as e:
            self.error, self._eof = f"read error: {_describe(e)}", True
            return
        if not chunk:
            if self._dec is not None:
                self.error = f"{self.codec} stream ends before its end marker"
            self._eof = True
            return
        self._raw_pos += len(chunk)
        out: list[bytes] = []
        produced = self._produced
        data = chunk
        while data:
            if self._dec is None:
                if self.codec == "gzip":
                    data = data.lstrip(b"\x00")  # zero padding between members is allowed
                    if not data:
                        break
                self.checkpoints.add(produced, self._raw_pos - len(data))
                self._dec = self._new_decoder()
            try:
                piece = self._dec.decompress(data)
            except (zlib.error, zstandard.ZstdError) as e:
                if not (self._recover and self.codec == "gzip"):
                    self.error, self._eof = f"corrupt {self.codec} stream: {e}", True
                    break
                self.damage.append(produced)
                self._dec = None
                data = self._next_member(data)
                continue
            out.append(piece)
            produced += len(piece)
            if self._dec.eof:
                data = self._dec.unused_data
                self._dec = None
            else:
                data = b""
        if produced > self._produced:
            self._buf = self._buf[self._off:] + b"".join(out)
            self._off = 0
            self._produced = produced

    def _next_member(self, data: bytes) -> bytes:
        """``data`` from the next gzip member header after its first byte, reading on as needed; b"" at EOF."""
        data = data[1:]
        while True:
            i = data.find(b"\x1f\x8b\x08")
            if i >= 0:
                return data[i:]
            try:
                more = self._raw.read(_CHUNK)
            except OSError:
                more = b""
            if not more:
                return b""
            self._raw_pos += len(more)
            data = data[-2:] + more

    def read(self, n: int = -1) -> bytes:
        if self.codec is None:
            try:
                data = self._raw.read(n)
            except OSError as e:
                self.error = f"read error: {_describe(e)}"
                return b""
            self._pos += len(data)
            return data
        if n is None or n < 0:
            while not self._eof:
                self._fill()
            n = len(self._buf) - self._off
        while len(self._buf) - self._off < n and not self._eof:
            self._fill()
        data = self._buf[self._off:self._off + n]
        self._off += len(data)
        self._pos += len(data)
        return data

    def skip(self, n: int) -> None:
        while n > 0:
            got = len(self.read(min(n, 1 << 20)))
            if not got:
                return
            n -= got
