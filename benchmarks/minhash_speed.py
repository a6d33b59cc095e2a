"""MinHash signature throughput per core: skycurate's batch signatures vs datasketch ``MinHash.bulk``.

Same texts (the English and Chinese documents of ``minhash_quality.py``), same number of
permutations, one process and one thread each (numpy ufuncs are single-threaded; Arrow's
pool is set to one thread). Both sides start from raw text:

- skycurate: ``minhash_batch`` on Arrow batches of ``--batch`` rows (normalise, shingle,
  permute, band hashes): exactly what each Spark task runs;
- datasketch: the pure-Python reference shingler (same normalisation and n-grams) then
  ``MinHash.bulk`` (datasketch 2.0, default affine32 scheme, SHA-1 of each shingle); the
  ``bulk only`` row excludes the shingling.

Reference figures (REFERENCE.md): datatrove's signature stage ~170 docs/s/core, datasketch
``MinHash.bulk`` ~1,900 docs/s/core on real documentation pages. Goal: >= 3x datasketch.

Usage: .venv/bin/python benchmarks/minhash_speed.py [--n 4000] [--quick] [--batch 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from minhash_quality import build_corpus, py_shingles  # noqa: E402


def _rate(n_docs: int, n_bytes: int, secs: float) -> tuple[float, float]:
    return n_docs / secs, n_bytes / secs / 1e6


def time_skycurate(texts: list[str], langs: list[str], cfg, batch_rows: int, repeat: int) -> float:
    from skycurate.stages.web.minhash import minhash_batch

    batches = [pa.record_batch({"id": [str(i) for i in range(lo, min(lo + batch_rows, len(texts)))],
                                "text": pa.array(texts[lo:lo + batch_rows], pa.string()),
                                "lang": pa.array(langs[lo:lo + batch_rows], pa.string())})
               for lo in range(0, len(texts), batch_rows)]
    minhash_batch(batches[0], cfg)   # warm-up: permutation tables, regex compilation
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for b in batches:
            minhash_batch(b, cfg)
        best = min(best, time.perf_counter() - t0)
    return best


def time_datasketch(texts: list[str], langs: list[str], num_perm: int, repeat: int) -> tuple[float, float]:
    """(seconds for shingling + bulk, seconds for bulk alone)."""
    from datasketch import MinHash

    best_all = best_bulk = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        shingles = [[s.encode("utf-8") for s in py_shingles(t, lang)] for t, lang in zip(texts, langs)]
        t1 = time.perf_counter()
        MinHash.bulk(shingles, num_perm=num_perm, seed=1)
        t2 = time.perf_counter()
        best_all, best_bulk = min(best_all, t2 - t0), min(best_bulk, t2 - t1)
    return best_all, best_bulk


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="documents (half English, half Chinese)")
    ap.add_argument("--quick", action="store_true", help="600 documents, one repetition")
    ap.add_argument("--batch", type=int, default=1000, help="rows per Arrow batch (Spark's default is 10,000)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--presets", default="default,datatrove")
    args = ap.parse_args(argv)
    n, repeat = (600, 1) if args.quick else (args.n, args.repeat)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)

    from skycurate.schemas.web_dedup import MinHashConfig

    docs, _ = build_corpus(n)
    print(f"{len(docs)} documents; best of {repeat}; one core; skycurate batches of {args.batch} rows")
    header = (f"{'method':<36} {'lang':<4} {'perms':>5} {'docs':>6} {'MB':>6} {'docs/s':>9} {'MB/s':>7} "
              f"{'vs datasketch':>14}")
    print(header)
    print("-" * len(header))
    for preset in args.presets.split(","):
        cfg = MinHashConfig(preset=preset)
        for lang in ("en", "zh", "all"):
            sub = [d for d in docs if lang == "all" or d.lang == lang]
            texts, langs = [d.text for d in sub], [d.lang for d in sub]
            n_bytes = sum(len(t.encode("utf-8")) for t in texts)
            ours = time_skycurate(texts, langs, cfg, args.batch, repeat)
            theirs, bulk = time_datasketch(texts, langs, cfg.num_perm, repeat)
            rows = [(f"skycurate minhash_batch ({preset})", ours), ("datasketch shingling + MinHash.bulk", theirs),
                    ("datasketch MinHash.bulk only", bulk)]
            for name, secs in rows:
                docs_s, mb_s = _rate(len(texts), n_bytes, secs)
                print(f"{name:<36} {lang:<4} {cfg.num_perm:>5} {len(texts):>6} {n_bytes / 1e6:>6.1f} {docs_s:>9,.0f} "
                      f"{mb_s:>7.2f} {theirs / secs:>13.1f}x")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
