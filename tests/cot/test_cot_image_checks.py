"""Prompt image limits (stages/cot/image_checks.py) and image decontamination by perceptual hash
(stages/cot/image_decontam.py): over-large images resized or rejected, decompression bombs never
decoded, other formats converted, benchmark images found again after re-encoding, and the prepare
step accounting for each with its reason."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from skycurate.schemas import cot as S
from skycurate.stages.cot import image_checks as C
from skycurate.stages.cot import image_decontam as D
from skycurate.stages.cot import prompts as P


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _blobs(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth random picture (a few colour blobs): pHash behaves on it as on a photo."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)


def _noise(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _checkerboard(cells: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    w, h = size
    a = (np.arange(h)[:, None] * cells // h + np.arange(w)[None, :] * cells // w) % 2 * 255
    return Image.fromarray(a.astype(np.uint8)).convert("RGB")


def _png_header_only(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w x h RGB pixels (its pixel data is a few bytes: decoding fails)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------------ limits


def test_an_over_large_image_is_resized_keeping_its_aspect_ratio_and_format_family():
    cfg = S.ImageCheckConfig(max_pixels=1_000_000)
    big = Image.new("RGB", (5000, 4000), (20, 120, 200))
    for fmt in ("PNG", "JPEG"):
        out = C.check_image(_encode(big, fmt), cfg)
        img = _open(out.data)
        w, h = img.size
        assert w * h <= 1_000_000 and w * h > 990_000                     # as large as fits
        assert abs(w * 4000 / 5000 - h) <= 1                               # same aspect ratio, to the pixel
        assert img.format == fmt and out.notes == (C.RESIZED,)             # PNG stays lossless, JPEG stays JPEG
    small = _encode(Image.new("RGB", (300, 200), (1, 2, 3)), "PNG")
    assert C.check_image(small, cfg) == C.CheckedImage(small)              # within limits: byte for byte, never upsized
    assert C.fit_size(300, 200, 1_000_000) == (300, 200)


def test_a_resized_photo_is_turned_the_way_its_exif_orientation_says():
    photo = Image.new("RGB", (4000, 3000), (90, 60, 30))
    exif = photo.getexif()
    exif[0x0112] = 6                                                       # rotate 90 degrees to display
    out = C.check_image(_encode(photo, "JPEG", exif=exif), S.ImageCheckConfig(max_pixels=1_000_000))
    img = _open(out.data)
    assert img.size == (866, 1154) and img.getexif().get(0x0112) is None  # portrait, as viewers showed it


def test_reject_mode_quarantines_an_over_large_image_naming_its_size_and_the_limit():
    cfg = S.ImageCheckConfig(max_pixels=1_000_000, too_large="reject")
    with pytest.raises(C.ImageRejected) as e:
        C.check_image(_encode(Image.new("RGB", (5000, 4000)), "PNG"), cfg)
    assert e.value.reason == S.IMAGE_TOO_LARGE
    assert str(e.value) == "5000x4000 = 20,000,000 pixels > images.max_pixels 1,000,000"
    noisy = _encode(_noise(0, (400, 400)), "PNG")                           # ~480 KB, well within max_pixels
    with pytest.raises(C.ImageRejected, match=r"bytes > images.max_bytes 100,000"):
        C.check_image(noisy, S.ImageCheckConfig(max_bytes=100_000, too_large="reject"))
    shrunk = C.check_image(noisy, S.ImageCheckConfig(max_bytes=100_000))    # resize mode: shrinks until it fits
    assert len(shrunk.data) <= 100_000 and _open(shrunk.data).size[0] < 400 and shrunk.notes == (C.RESIZED,)


@pytest.mark.parametrize("side", [30000, 10000])
def test_a_decompression_bomb_header_is_quarantined_without_decoding(side):
    """30000^2 trips PIL's own bomb error; 10000^2 only its warning, and our header check. Decoding
    either would fail on the missing pixel data (bad_image): image_too_large shows it was never tried."""
    bomb = _png_header_only(side, side)
    assert len(bomb) < 200
    for mode in ("resize", "reject"):
        with pytest.raises(C.ImageRejected) as e:
            C.check_image(bomb, S.ImageCheckConfig(too_large=mode))
        assert e.value.reason == S.IMAGE_TOO_LARGE and "not decoded" in str(e.value)


def test_other_formats_are_converted_to_png_and_garbage_is_a_bad_image():
    pic = _blobs(3, (64, 48))
    for fmt in ("BMP", "TIFF"):
        out = C.check_image(_encode(pic, fmt), S.ImageCheckConfig())
        assert _open(out.data).format == "PNG" and out.notes == (C.CONVERTED,)
        assert np.array_equal(np.asarray(_open(out.data).convert("RGB")), np.asarray(pic))   # lossless
    webp = _encode(pic, "WEBP")
    assert C.check_image(webp, S.ImageCheckConfig()).data == webp          # an accepted format is kept
    for junk, detail in [(b"not an image at all", "unsupported image format"),
                         (_encode(pic, "PNG")[:100], "does not decode")]:   # truncated pixel data
        with pytest.raises(C.ImageRejected, match=detail) as e:
            C.check_image(junk, S.ImageCheckConfig())
        assert e.value.reason == S.BAD_IMAGE


def test_check_rows_quarantines_with_the_reason_and_notes_what_it_changed(tmp_path):
    (tmp_path / "big.png").write_bytes(_encode(Image.new("RGB", (2000, 1000), (9, 9, 9)), "PNG"))
    (tmp_path / "old.bmp").write_bytes(_encode(_blobs(1, (40, 30)), "BMP"))
    base = {"question": "What is shown?", "reference_answer": "A", "answer_type": "mcq"}
    rows = [{"id": "big", **base, "images": ["big.png", "old.bmp"]},
            {"id": "bomb", **base, "images": [_png_header_only(30000, 30000)]},
            {"id": "junk", **base, "images": [b"\x00\x01junk"]}]
    out = P.check_rows(rows, str(tmp_path), S.ImageCheckConfig(max_pixels=500_000)).to_pylist()
    assert [r["quarantine_reason"] for r in out] == [None, S.IMAGE_TOO_LARGE, S.BAD_IMAGE]
    assert out[0]["image_notes"] == [C.RESIZED, C.CONVERTED] and _open(out[0]["images"][0]).size == (1000, 500)
    assert out[1]["images"] is None and "decompression bomb" in out[1]["quarantine_detail"]
    strict = P.check_rows(rows[:1], str(tmp_path), S.ImageCheckConfig(max_pixels=500_000, too_large="reject"))
    assert strict.to_pylist()[0]["quarantine_detail"] == "2000x1000 = 2,000,000 pixels > images.max_pixels 500,000"
    assert "image_notes" not in P.PROMPT_COLUMNS


def test_image_formats_config_is_normalised_and_keeps_png():
    assert S.ImageCheckConfig(formats=["png", "jpg"]).formats == ["PNG", "JPEG"]
    with pytest.raises(ValueError, match="PNG"):
        S.ImageCheckConfig(formats=["JPEG"])


# ------------------------------------------------------------------------------------ pHash


def test_a_re_encoded_resized_benchmark_image_matches_and_unrelated_images_do_not():
    bench = _encode(_blobs(0), "PNG")
    index = D.build_image_index({"mathvista": [bench, _encode(_blobs(1), "PNG")]}, max_hamming=8)
    assert index is not None and len(index.hashes) == 2
    copy = _encode(_blobs(0).resize((288, 216)), "JPEG", quality=75)       # re-encoded and 10% smaller
    hit = index.match(D.phash64(copy))
    assert hit is not None and hit[0] == "mathvista" and hit[1] <= 8
    for seed in range(2, 12):                                              # other pictures of the same kind
        assert index.match(D.phash64(_encode(_blobs(seed), "PNG"))) is None
    assert index.match(D.phash64(_encode(_noise(5, (320, 240)), "PNG"))) is None
    assert D.image_match([_encode(_blobs(7), "PNG"), copy], index) == hit  # any image of the prompt


def test_images_without_structure_are_neither_indexed_nor_matched():
    """Every solid colour has the same pHash, and a fine checkerboard ties its low frequencies: indexing
    them would match every other flat picture."""
    flat = [_encode(Image.new("RGB", (64, 64), c), "PNG") for c in [(255, 0, 0), (0, 0, 255), (250, 250, 250)]]
    assert [D.phash64(x) for x in flat] == [None, None, None]
    assert D.phash64(_encode(_checkerboard(8), "PNG")) is None
    assert D.build_image_index({"b": flat}, 8) is None
    with pytest.raises(Exception, match="benchmark b: image 0 image does not decode"):
        D.build_image_index({"b": [b"junk"]}, 8)


def test_benchmark_images_load_from_paths_structs_and_bytes_without_changing_the_text(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skycurate.connectors.benchmarks import BenchmarkError, load_benchmark, load_benchmark_images
    from skycurate.schemas.leakage import BenchmarkSpec

    a, b, c = (_encode(_blobs(s, (32, 32)), "PNG") for s in (1, 2, 3))
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "a.png").write_bytes(a)
    rows = [{"question": "Q1", "image": "figs/a.png"}, {"question": "Q2"}, {"question": "Q3", "images": None}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.table({"question": ["Q4", "Q5"],
                             "images": [[{"bytes": b, "path": None}, {"bytes": None, "path": "figs/a.png"}],
                                        [{"bytes": c, "path": None}]]}), tmp_path / "train.parquet")
    spec = BenchmarkSpec(name="vqa", path=str(tmp_path), text_field="question")
    assert load_benchmark_images(spec, ["test"]) == [a]
    assert load_benchmark_images(spec) == [b, a, c, a]                     # train, then test
    assert load_benchmark(spec, ["test"])["test"]["text"].to_pylist() == ["Q1", "Q2", "Q3"]
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "Q", "image": "figs/gone.png"}) + "\n")
    with pytest.raises(BenchmarkError, match="image figs/gone.png of .*test.jsonl:1 cannot be read"):
        load_benchmark_images(spec, ["test"])


# ------------------------------------------------------------------------------------ the prepare step


def test_prepare_drops_a_prompt_with_a_benchmark_image_and_accounts_for_every_image(spark, tmp_path):
    from skycurate.catalog import Catalog
    from skycurate.connectors.benchmarks import pin_benchmarks
    from skycurate.flows.cot_distill import prepare_prompts
    from skycurate.schemas.config import SparkConfig
    from skycurate.schemas.cot_prompts import PromptFields
    from skycurate.schemas.leakage import BenchmarkSpec
    from skycurate.stages.raw_records import resolve_source

    bench_dir, data = tmp_path / "bench", tmp_path / "prompts"
    bench_dir.mkdir()
    data.mkdir()
    (bench_dir / "chart.png").write_bytes(_encode(_blobs(0), "PNG"))
    bench_q = "Looking at the chart, which of the quarterly sales figures grew the most between spring and summer?"
    (bench_dir / "test.jsonl").write_text(json.dumps({"question": bench_q, "image": "chart.png"}) + "\n")
    files = {"copy.jpg": _encode(_blobs(0).resize((300, 225)), "JPEG", quality=80),   # the benchmark's chart
             "own.png": _encode(_blobs(1), "PNG"), "big.png": _encode(_blobs(2, (3000, 2000)), "PNG"),
             "old.bmp": _encode(_blobs(3), "BMP"), "bomb.png": _png_header_only(30000, 30000),
             "junk.png": b"definitely not a picture"}
    for name, blob in files.items():
        (data / name).write_bytes(blob)
    rows = [("own", "Which bar is the tallest in this chart of pets?", ["own.png"]),
            ("copy", "Name the tallest bar of the chart shown here.", ["own.png", "copy.jpg"]),
            ("big", "How many regions does this map show?", ["big.png"]),
            ("old", "What colour dominates the scan?", ["old.bmp"]),
            ("bomb", "Describe the picture.", ["bomb.png"]),
            ("junk", "What is in the image?", ["junk.png"]),
            ("text", bench_q, None)]
    with (data / "prompts.jsonl").open("w") as f:
        for pid, q, images in rows:
            f.write(json.dumps({"id": pid, "question": q, "reference_answer": "A", "answer_type": "exact",
                                "images": images}) + "\n")
    store = str(tmp_path / "store")
    source = str(data / "prompts.jsonl")
    spec = BenchmarkSpec(name="chartqa", path=str(bench_dir), text_field="question")
    cfg = S.PrepareConfig(images=S.ImageCheckConfig(max_pixels=1_000_000))
    refs = prepare_prompts.fn(store=store, source=source, source_key=resolve_source(source, store),
                              layout="skycurate", fields=PromptFields(), benchmarks=[spec],
                              files=pin_benchmarks([spec]), cfg=cfg, spark=SparkConfig(shuffle_partitions=4))

    catalog = Catalog(store)
    kept = {r["id"]: r for r in catalog.open(refs["prompts"]).to_table().to_pylist()}
    dropped = {r["id"]: r for r in catalog.open(refs["dropped"]).to_table().to_pylist()}
    assert sorted(kept) == ["big", "old", "own"]
    copy = dropped["copy"]
    assert (copy["kind"], copy["stage"], copy["reason"]) == ("rejected", S.DECONTAMINATE, S.CONTAMINATED_IMAGE)
    assert "benchmark chartqa" in copy["detail"] and "Hamming distance" in copy["detail"]
    assert (dropped["text"]["stage"], dropped["text"]["reason"]) == (S.DECONTAMINATE, S.CONTAMINATED)
    assert (dropped["bomb"]["kind"], dropped["bomb"]["reason"]) == ("quarantine", S.IMAGE_TOO_LARGE)
    assert (dropped["junk"]["kind"], dropped["junk"]["reason"]) == ("quarantine", S.BAD_IMAGE)
    assert _open(kept["big"]["images"][0]).size == (1224, 816)             # 3000x2000 fitted into 1,000,000 pixels
    assert _open(kept["old"]["images"][0]).format == "PNG"
    assert kept["own"]["images"] == [files["own.png"]]

    stats = catalog.manifest(refs["prompts"]).stats
    assert stats["input"] == len(rows) == stats["kept"] + stats["dropped"] == len(kept) + len(dropped)
    assert stats["by_reason"] == {"rejected:contaminated_image": 1, "rejected:contaminated": 1,
                                  "quarantine:image_too_large": 1, "quarantine:bad_image": 1}
    assert (stats["images_resized"], stats["images_converted"], stats["benchmark_images"]) == (1, 1, 1)
    assert "image_notes" not in catalog.open(refs["prompts"]).schema.names

    off = cfg.model_copy(update={"image_decontaminate": False})
    refs = prepare_prompts.fn(store=store, source=source, source_key=resolve_source(source, store),
                              layout="skycurate", fields=PromptFields(), benchmarks=[spec],
                              files=pin_benchmarks([spec]), cfg=off, spark=SparkConfig(shuffle_partitions=4))
    assert "copy" in {r["id"] for r in catalog.open(refs["prompts"]).to_table().to_pylist()}
