"""Catalog overhead, side by side with plain pyarrow in one run.

What publishing adds over ``pyarrow.parquet.write_table`` (sha256 of every file, the
manifest, the version claim, the atomic rename) and what ``catalog.open`` adds over
``pyarrow.dataset.dataset`` on the same files. Prints absolute times and ratios; run it
with ``make bench`` or ``python benchmarks/catalog_publish.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from skycurate.catalog import Catalog


def make_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(0)
    words = np.array(["data", "curation", "长江", "parquet", "spark", "token", "模型", "quality"])
    text = [" ".join(rng.choice(words, 40)) for _ in range(min(rows, 10_000))]
    reps = -(-rows // len(text))
    return pa.table({"id": pa.array(range(rows), pa.int64()), "text": (text * reps)[:rows],
                     "score": rng.random(rows)})


def best_of(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    table = make_table(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        plain_dir = Path(tmp, "plain")
        plain_dir.mkdir()
        counter = iter(range(10**6))

        def plain_write():
            pq.write_table(table, plain_dir / f"{next(counter)}.parquet", compression="zstd")

        cat = Catalog(Path(tmp, "store"))

        def publish():
            cat.publish("bench/t", table)

        ref = cat.publish("bench/t", table)
        plain_file = plain_dir / "read.parquet"
        pq.write_table(table, plain_file, compression="zstd")

        rows = [
            ("write", "pyarrow write_table", best_of(plain_write, args.repeat), "catalog.publish", best_of(publish, args.repeat)),
            ("read", "ds.dataset(file).to_table", best_of(lambda: ds.dataset(plain_file).to_table(), args.repeat),
             "catalog.open(ref).to_table", best_of(lambda: cat.open(ref).to_table(), args.repeat)),
            ("verify", "sha256 of the file", best_of(lambda: hashlib.sha256(plain_file.read_bytes()).hexdigest(), args.repeat),
             "catalog.verify", best_of(lambda: cat.verify(ref), args.repeat)),
        ]
        size_mb = sum(f.bytes for f in cat.manifest(ref).files) / 1e6
        print(f"catalog overhead, {args.rows:,} rows, {size_mb:.1f} MB of Parquet, best/median of {args.repeat}")
        print(f"{'op':<7} {'peer':<27} {'best s':>8} {'ours':<28} {'best s':>8} {'ratio':>6}")
        for op, peer, (pb, _), ours, (ob, _) in rows:
            print(f"{op:<7} {peer:<27} {pb:>8.3f} {ours:<28} {ob:>8.3f} {ob / pb:>6.2f}x")


if __name__ == "__main__":
    main()
