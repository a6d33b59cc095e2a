"""Image decontamination: a prompt whose image is a near copy of a benchmark image is rejected.

Text n-grams cannot see a benchmark's figure re-used under a reworded question, so every prompt
image is compared with the benchmark images by perceptual hash: ``imagehash.phash`` (the DCT
hash: the 8x8 lowest frequencies of a 32x32 grayscale thumbnail against their median, 64 bits).
Re-encoding, rescaling and mild colour changes move a pHash by a few bits, while unrelated pictures
sit around 32 bits apart (the bits are close to independent), so a Hamming distance of at most
``prepare.image_max_hamming`` (default 8, the usual setting for 64-bit pHash near-duplicate
search; false matches between unrelated images start to appear past ~10) means the same image.

Images without low-frequency structure give hashes that say nothing about where a picture comes
from: flat ones (solid colours, blank pages: ``FLAT_STD``) all share one hash, and those whose low
DCT coefficients tie (fine checkerboards, some synthetic patterns) set few bits, where a real pHash
sets 32 of 64 (the bits above the median). Neither kind is indexed or matched (``MIN_SET_BITS``).

Scale: benchmark image sets hold thousands of images, so the index is a plain ``uint64`` array
(XOR + popcount against all of it per prompt image), shipped to the Spark workers in the
``map_batches`` closure like the text n-gram index.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from skycurate.errors import SkycurateError
from skycurate.schemas import cot as S
from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE

HASH_SIZE = 8           # 8 x 8 DCT coefficients: a 64-bit hash
FLAT_STD = 2.0          # thumbnail grey-level standard deviation below which an image is flat
MIN_SET_BITS = 24       # fewer bits above the median: tied coefficients, a hash without information


def phash64(data: bytes) -> int | None:
    """The 64-bit pHash of an encoded image; None when it carries no information (flat or degenerate).
    ``ValueError`` when it does not decode."""
    import imagehash
    from PIL import Image

    side = HASH_SIZE * 4   # imagehash's highfreq_factor: the thumbnail phash itself makes
    try:
        with Image.open(io.BytesIO(data)) as img:
            thumb = img.convert("L").resize((side, side), Image.Resampling.LANCZOS)
    except Exception as e:  # noqa: BLE001 - any decoder failure
        raise ValueError(f"image does not decode: {type(e).__name__}") from None
    if float(np.asarray(thumb, dtype=np.float64).std()) < FLAT_STD:
        return None
    h = int(str(imagehash.phash(thumb, hash_size=HASH_SIZE)), 16)
    return h if h.bit_count() >= MIN_SET_BITS else None


def hamming(a: np.ndarray, b: int) -> np.ndarray:
    """Bit distances between every hash of ``a`` (uint64) and ``b``."""
    return np.bitwise_count(a ^ np.uint64(b)).astype(np.int64)


@dataclass(frozen=True)
class ImageIndex:
    """Benchmark image hashes and the benchmark each came from."""

    hashes: np.ndarray                  # uint64, one per indexed image
    benchmarks: tuple[str, ...]         # the benchmark of each hash
    max_hamming: int

    def match(self, h: int) -> tuple[str, int] | None:
        """(benchmark, distance) of the nearest benchmark image within ``max_hamming``, else None."""
        if not len(self.hashes):
            return None
        d = hamming(self.hashes, h)
        i = int(d.argmin())
        return (self.benchmarks[i], int(d[i])) if d[i] <= self.max_hamming else None


def build_image_index(images: Mapping[str, Sequence[bytes]], max_hamming: int) -> ImageIndex | None:
    """benchmark -> its images -> the index; None when no benchmark has an image to index."""
    hashes, names = [], []
    for name, blobs in images.items():
        for i, data in enumerate(blobs):
            try:
                h = phash64(data)
            except ValueError as e:
                raise SkycurateError(f"benchmark {name}: image {i} {e}; fix or remove it") from None
            if h is not None:
                hashes.append(h)
                names.append(name)
    if not hashes:
        return None
    return ImageIndex(np.array(hashes, dtype=np.uint64), tuple(names), max_hamming)


def image_match(images: Sequence[bytes], index: ImageIndex) -> tuple[str, int] | None:
    """The closest match of any of a prompt's images (a prompt image that does not decode is skipped:
    the prompt checks quarantine those before this runs)."""
    best = None
    for data in images:
        try:
            h = phash64(data)
        except ValueError:
            continue
        hit = None if h is None else index.match(h)
        if hit is not None and (best is None or hit[1] < best[1]):
            best = hit
    return best


def image_verdicts(batch: pa.RecordBatch, index: ImageIndex) -> pa.RecordBatch:
    """Rows still kept whose image matches a benchmark image get the ``decontaminate`` verdict."""
    stages = batch.column(REJECT_STAGE).to_pylist()
    reasons = batch.column(REJECT_REASON).to_pylist()
    for i, pics in enumerate(batch.column("images").to_pylist()):
        if reasons[i] is not None or not pics:
            continue
        hit = image_match(pics, index)
        if hit is not None:
            stages[i] = S.DECONTAMINATE
            reasons[i] = f"{S.CONTAMINATED_IMAGE}: an image matches one of benchmark {hit[0]} (pHash Hamming " \
                         f"distance {hit[1]} <= {index.max_hamming})"
    return _with(_with(batch, REJECT_STAGE, stages), REJECT_REASON, reasons)


def _with(batch: pa.RecordBatch, name: str, values: list[Any]) -> pa.RecordBatch:
    i = batch.schema.get_field_index(name)
    return batch.set_column(i, batch.schema.field(i), pa.array(values, batch.schema.field(i).type))
