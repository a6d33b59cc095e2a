"""How the web flow scales: wall time, docs/s and peak memory at 100k and 1M documents.

Inputs are synthetic *text* documents in Parquet (``url``, ``text``; ~2.5 KB of English or Chinese text
each, from the same sentence synthesiser as ``web_throughput.py``), so HTML extraction is skipped:
the extract stage passes the given text through and everything after it runs as on a crawl (read,
language ID, safety, quality signals and filters, boilerplate, exact + MinHash near dedup, publish
of every stage dataset; no quality model). Planted: ~3% near duplicates, ~1% exact copies, ~6% thin,
spammy or short pages; ~2% of domains are on the URL blocklist.

Each size runs the whole ``web_flow`` (Prefect ephemeral API, Spark ``local[2]``) in a fresh subprocess
and a fresh store. Memory is sampled every ``--interval`` seconds over the subprocess and all its
descendants (driver Python, the Spark JVM, Spark's Python workers, Prefect's API server), as PSS from
``/proc/PID/smaps_rollup`` (RSS with shared pages split between the processes sharing them): the peak
of the sum and each part's own peak are printed.
Progress lines show each dataset as it is published.

Memory: in ``local`` mode the executors live in the driver JVM, so ``--driver-memory`` is their heap.
With SparkConfig's default (2g) the 1M run fails (java.lang.OutOfMemoryError while the extract stage
caches its output, ~45 s in; 100k passes): give 1M ``--driver-memory 8g``. The JVM then grows towards
its larger heap, so peak memory depends on the setting as much as on the data.

    .venv/bin/python benchmarks/web_scale.py                   # 100k and 1M (1M takes a while)
    .venv/bin/python benchmarks/web_scale.py --quick           # 10k and 100k
    .venv/bin/python benchmarks/web_scale.py --sizes 50000 --driver-memory 4g --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CORES = 2

# ================================================================================= inputs


def write_text_corpus(n: int, folder: Path, rows_per_file: int, seed: int = 11) -> dict:
    """``n`` text documents as Parquet files of ``rows_per_file`` rows; returns counts of what was planted."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from web_throughput import SPAM_WORDS, TextSynth

    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    synth = TextSynth(rng)
    # Variants of every base sentence: a page takes each base sentence at most once (no repeated 5-grams
    # inside a page, as on a real page), so its lines are distinct; sentences recur across the corpus
    # (~n*20/pool times), as quotes and common phrasing do.
    bases = {lang: synth.sentences[lang] for lang in ("en", "zh")}
    n_var = max(50, min(2000, n // 50))
    pools = {lang: [[synth.perturb(lang, b) for _ in range(n_var)] for b in bs] for lang, bs in bases.items()}

    def draw(lang: str, m: int) -> list[str]:
        pool = pools[lang]
        picked = nrng.permutation(len(pool))[:m]
        return [pool[b][v] for b, v in zip(picked, nrng.integers(0, n_var, len(picked)))]

    sep = {"en": " ", "zh": ""}
    n_sites = max(10, n // 40)
    sites = [(f"site{i}.{'example' if i % 5 < 3 else 'example.cn'}", "en" if i % 5 < 3 else "zh") for i in range(n_sites)]
    blocked = {d for d, _ in rng.sample(sites, max(1, n_sites // 50))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder.parent / "domains.txt").write_text("\n".join(sorted(blocked)) + "\n")
    (folder.parent / "keywords.txt").write_text("\n".join(SPAM_WORDS) + "\n")

    planted = {"near": 0, "exact": 0, "low": 0}
    recent: list[str] = []
    urls: list[str] = []
    texts: list[str] = []
    part = 0
    t0 = time.perf_counter()

    def flush():
        nonlocal part, urls, texts
        if urls:
            pq.write_table(pa.table({"url": pa.array(urls, pa.string()), "text": pa.array(texts, pa.string())}),
                           folder / f"part-{part:05d}.parquet", compression="zstd")
            part += 1
            urls, texts = [], []

    site_idx = nrng.integers(0, n_sites, size=n)
    rolls = nrng.random(n)
    for k in range(n):
        domain, lang = sites[site_idx[k]]
        roll = rolls[k]
        if roll < 0.03 and recent:
            lines = rng.choice(recent).split("\n")
            i = rng.randrange(1, len(lines))
            lines[i] = sep[lang].join(draw(lang, 2))
            text = "\n".join(lines)
            planted["near"] += 1
        elif roll < 0.04 and recent:
            text = rng.choice(recent)
            planted["exact"] += 1
        elif roll < 0.10:
            planted["low"] += 1
            kind = rng.randrange(3)
            if kind == 0:  # short
                text = draw(lang, 1)[0]
            elif kind == 1:  # spam
                text = draw(lang, 1)[0] + sep[lang] + (rng.choice(SPAM_WORDS) + " ") * rng.randint(5, 20)
            else:  # thin: a list of short lines
                text = "\n".join(x[:rng.randint(12, 30)] for x in draw(lang, rng.randint(10, 30)))
        else:
            sizes = nrng.integers(2, 5, int(nrng.integers(3, 11)))
            sents = draw(lang, int(sizes.sum()) + 1)  # the last one gives the title, not used in the body
            paras, at = [sents.pop()[:40 if lang == "en" else 14].rstrip(" ,，。.")], 0
            for sz in sizes:
                if at < len(sents):
                    paras.append(sep[lang].join(sents[at:at + sz]))
                at += sz
            text = "\n".join(paras)
            if len(recent) < 5000:
                recent.append(text)
            else:
                recent[rng.randrange(5000)] = text
        urls.append(f"https://{domain}/a/{k}")
        texts.append(text)
        if len(urls) >= rows_per_file:
            flush()
            done = k + 1
            rate = done / (time.perf_counter() - t0)
            print(f"  generated {done:,}/{n:,} docs ({rate:,.0f} docs/s)", flush=True)
    flush()
    return planted


# ================================================================================= memory


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _memory(pid: int) -> int:
    """PSS in bytes (shared pages split between the processes sharing them: Spark's Python workers are
    forked from one daemon, so summing their RSS would count the shared pages several times); RSS where
    ``smaps_rollup`` is missing."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rss_and_kind(pid: int, root: int) -> tuple[int, str] | None:
    try:
        rss = _memory(pid)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return None
    if pid == root:
        kind = "driver python"
    elif "java" in cmd.split(" ", 1)[0]:
        kind = "spark jvm"
    elif "pyspark" in cmd:
        kind = "spark python workers"
    elif "prefect" in cmd or "uvicorn" in cmd:
        kind = "prefect api"
    else:
        kind = "other"
    return rss, kind


def sample_tree(root: int) -> dict[str, int]:
    """Memory (PSS) in bytes of ``root`` and all its descendants, summed per kind of process."""
    kids = _children_map()
    out = {}
    stack = [root]
    while stack:
        pid = stack.pop()
        stack.extend(kids.get(pid, []))
        got = _rss_and_kind(pid, root)
        if got:
            out[got[1]] = out.get(got[1], 0) + got[0]
    return out


class MemoryMonitor(threading.Thread):
    def __init__(self, pid: int, interval: float, store: Path, t0: float):
        super().__init__(daemon=True)
        self.pid, self.interval, self.store, self.t0 = pid, interval, store, t0
        self.peak_total = 0
        self.peak_by_kind: dict[str, int] = {}
        self.published: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        seen: set[str] = set()
        last_beat = time.perf_counter()
        while not self.stop.wait(self.interval):
            sample = sample_tree(self.pid)
            total = sum(sample.values())
            self.peak_total = max(self.peak_total, total)
            for k, v in sample.items():
                self.peak_by_kind[k] = max(self.peak_by_kind.get(k, 0), v)
            now = time.perf_counter()
            for latest in sorted(self.store.glob("*/*/_latest")):
                name = f"{latest.parent.parent.name}/{latest.parent.name}"
                if name not in seen:
                    seen.add(name)
                    self.published.append((now - self.t0, name))
                    print(f"  [{now - self.t0:7.1f}s] published {name:<20} mem now {total / 2**30:5.2f} GiB",
                          flush=True)
                    last_beat = now
            if now - last_beat > 60:
                print(f"  [{now - self.t0:7.1f}s] running; mem now {total / 2**30:5.2f} GiB, "
                      f"peak {self.peak_total / 2**30:5.2f} GiB", flush=True)
                last_beat = now


# ================================================================================= one run


def _flow_worker(args) -> None:  # in its own process
    from skycurate import catalog
    from skycurate.flows.web_corpus import web_flow
    from skycurate.schemas.config import SparkConfig
    from skycurate.schemas.web_flow import WebConfig
    from skycurate.spark import get_spark

    spark_kw = {"master": f"local[{CORES}]"}
    if args.driver_memory:
        spark_kw["driver_memory"] = args.driver_memory
    spark_kw["local_jit"] = args.local_jit
    spark_cfg = SparkConfig(**spark_kw)
    t0 = time.perf_counter()
    get_spark(spark_cfg)
    spark_start = time.perf_counter() - t0
    root = Path(args._work)
    cfg = WebConfig(inputs=[str(root / "input")], spark=spark_cfg,
                    safety={"url_blocklist": str(root / "domains.txt"), "keyword_blocklist": str(root / "keywords.txt")})
    t1 = time.perf_counter()
    result = web_flow(store=str(root / "store"), config=cfg)
    wall = time.perf_counter() - t1
    clean = catalog.manifest(result["datasets"]["clean"])
    Path(args._out).write_text(json.dumps({"wall_s": wall, "spark_start_s": spark_start, "kept": clean.num_rows,
                                           "input": clean.stats["input"],
                                           "funnel": {s["stage"]: s["rows_out"] for s in result["funnel"]}}))


def run_size(n: int, base: Path, args) -> dict:
    work = base / f"n{n}"
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n== {n:,} documents: writing Parquet text inputs to {work / 'input'}", flush=True)
    t = time.perf_counter()
    planted = write_text_corpus(n, work / "input", args.rows_per_file or max(1000, min(50_000, -(-n // 8))))
    gen_s = time.perf_counter() - t
    in_bytes = sum(p.stat().st_size for p in (work / "input").glob("*.parquet"))
    print(f"  {n:,} docs in {gen_s:.0f}s, {in_bytes / 2**20:.0f} MiB Parquet; planted {planted}", flush=True)

    out = work / "result.json"
    env = dict(os.environ, SKYCURATE_SPARK_MASTER=f"local[{CORES}]", PREFECT_HOME=str(work / "prefect-home"),
               DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, os.path.abspath(__file__), "--_flow-worker", "--_work", str(work), "--_out", str(out)]
    if args.driver_memory:
        cmd += ["--driver-memory", args.driver_memory]
    cmd += ["--local-jit", args.local_jit]
    print(f"  running the web flow (Spark local[{CORES}], Prefect ephemeral) ...", flush=True)
    (work / "store").mkdir(parents=True, exist_ok=True)
    with open(work / "flow.log", "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        mon = MemoryMonitor(proc.pid, args.interval, work / "store", t0)
        mon.start()
        rc = proc.wait()
        cold = time.perf_counter() - t0
        mon.stop.set()
        mon.join()
    if rc != 0 or not out.exists():
        tail = "\n".join((work / "flow.log").read_text(errors="replace").strip().splitlines()[-20:])
        print(f"  the web flow FAILED at {n:,} documents (rc {rc}) after {cold:.0f}s, peak mem "
              f"{mon.peak_total / 2**30:.2f} GiB; log tail:\n{tail}", flush=True)
        if "OutOfMemoryError" in (work / "flow.log").read_text(errors="replace"):
            print("  (the Spark JVM ran out of heap: try a larger --driver-memory, e.g. 8g)", flush=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        return {"docs": n, "error": f"rc {rc} after {cold:.0f}s", "peak_rss": mon.peak_total}
    res = json.loads(out.read_text())
    res.update(docs=n, cold_wall_s=cold, gen_s=gen_s, input_bytes=in_bytes, peak_rss=mon.peak_total,
               peak_rss_by_kind=mon.peak_by_kind, published=mon.published)
    print(f"  done: flow {res['wall_s']:.0f}s ({n / res['wall_s']:,.0f} docs/s), kept {res['kept']:,}, "
          f"peak mem {mon.peak_total / 2**30:.2f} GiB", flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return res


def print_table(results: list[dict]) -> None:
    kinds = ["driver python", "spark jvm", "spark python workers", "prefect api"]
    print(f"\nweb flow on Parquet text inputs (extraction skipped), Spark local[{CORES}], {os.cpu_count()} cores\n")
    head = (f"{'docs':>10} {'flow s':>8} {'cold s':>8} {'docs/s':>8} {'docs/s/core':>11} {'kept':>10} "
            f"{'peak mem GiB':>12} " + " ".join(f"{k.replace('spark ', ''):>14}" for k in kinds))
    print(head)
    print("-" * len(head))
    failed = [r for r in results if "error" in r]
    results = [r for r in results if "error" not in r]
    for r in results:
        by = r["peak_rss_by_kind"]
        print(f"{r['docs']:>10,} {r['wall_s']:>8.1f} {r['cold_wall_s']:>8.1f} {r['docs'] / r['wall_s']:>8,.0f} "
              f"{r['docs'] / r['wall_s'] / CORES:>11,.0f} {r['kept']:>10,} {r['peak_rss'] / 2**30:>12.2f} "
              + " ".join(f"{by.get(k, 0) / 2**30:>14.2f}" for k in kinds))
    print("(flow s: the web_flow call, Spark already started; cold s: the whole subprocess; peak mem: the peak of "
          "the summed PSS over the process tree; per-part columns are each part's own peak, in GiB)")
    for a, b in itertools.pairwise(results):
        growth = b["wall_s"] / a["wall_s"]
        size = b["docs"] / a["docs"]
        print(f"time({b['docs']:,}) / time({a['docs']:,}) = {growth:.2f} for {size:.0f}x the documents "
              f"(linear = {size:.0f}; per-document time x{growth / size:.2f}); marginal "
              f"{(b['docs'] - a['docs']) / (b['wall_s'] - a['wall_s']):,.0f} docs/s between the two sizes")
    for r in failed:
        print(f"{r['docs']:,}: FAILED ({r['error']}, peak mem {r['peak_rss'] / 2**30:.2f} GiB); see the log above")
    for r in results:
        stages = ", ".join(f"{name.split('/')[1]} {t:.0f}s" for t, name in r["published"])
        print(f"{r['docs']:,}: published at {stages}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated document counts (default 100000,1000000)")
    ap.add_argument("--quick", action="store_true", help="sizes 10000,100000")
    ap.add_argument("--driver-memory", default=None,
                    help="spark.driver.memory (local mode: the executors live in the driver JVM); default: SparkConfig's")
    ap.add_argument("--local-jit", choices=["quick", "full"], default="quick",
                    help="SparkConfig.local_jit: 'quick' (C1 only, the default) or 'full' (tiered C1+C2)")
    ap.add_argument("--rows-per-file", type=int, default=None,
                    help="documents per input Parquet file (default: n/8, at most 50000; one read task per file)")
    ap.add_argument("--interval", type=float, default=2.0,
                    help="memory sampling interval, seconds (default 2; one sample reads smaps_rollup, ~0.1 s of CPU)")
    ap.add_argument("--keep", metavar="DIR", help="work here and keep inputs, stores and logs")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--_flow-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_work", help=argparse.SUPPRESS)
    ap.add_argument("--_out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._flow_worker:
        return _flow_worker(args)

    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="skycurate-webscale-"))
    base.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in sizes:
            results.append(run_size(n, base, args))
        print_table(results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
