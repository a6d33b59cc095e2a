"""N-gram decontamination: skycurate vs datatrove 0.10.1 (NGramsDecontFilter), side by side.

Same synthetic corpus (English and Chinese pages recombined from ``skycurate.samples.web``, with
benchmark items planted verbatim in every 20th page), same benchmark (synthetic question/answer
items, English and Chinese), 13-grams on both sides, same machine:

a) Per core: one process scans the whole corpus. skycurate: ``scan_batch`` on Arrow batches of
   1,000 documents (GPT-3 mode: the cutting is included). datatrove: ``NGramsDecontFilter.filter``
   on every ``Document`` (it stops at the first match and drops the document). Rates are documents
   (and MB of UTF-8 text) per CPU second. Recall = planted documents caught; false positives =
   other documents flagged.
b) 2 cores: skycurate ``decontaminate_on_spark`` on Spark ``local[2]`` (corpus read from Parquet,
   annotated rows written to Spark's ``noop`` sink; JVM startup excluded; "cold" = the first such
   job of the session, whose Python workers import skycurate and build their lookup tables,
   "warm" = the same job again, as every later job of a session runs) vs datatrove's
   ``LocalPipelineExecutor(tasks=2, workers=2)``: JsonlReader -> NGramsDecontFilter (process start
   and spaCy load included: datatrove pays them on every run). Rate per core = docs / (wall x 2).
c) Index memory against benchmark size (1k, 10k, 100k English items of ~60 words): skycurate's
   ``NgramIndex.nbytes`` (what is broadcast) and the Bloom filter each worker builds, vs datatrove's
   index files on disk and the Python dict ``NGramsDecontFilter`` loads them into (``sys.getsizeof``
   of the dict and its int keys; every worker holds one).

How datatrove is fed without lighteval: ``NGramsDecontIndexer`` needs lighteval tasks (not
installed, and it downloads data sets). The worker computes exactly what its ``compute_hashes``
computes for a label without a query (``simplify_text`` -> the language's word tokenizer ->
``n``-grams joined by spaces -> ``xxhash64``) and writes them, as the indexer does, as raw uint64
to ``<task>.index.hashes``. datatrove tokenises with one language per filter, so English pages
go through an English filter (``eng``: spaCy) and Chinese pages through a Chinese one (``cmn``:
spaCy + jieba; datatrove's ``zh`` would be its multilingual tokenizer, blind to Chinese words),
each with an index built by the same tokenizer; their times add up.

    .venv/bin/python benchmarks/decontamination.py [--docs 10000] [--items 10000] [--quick] [--skip-spark]

datatrove runs in ``.venv-bench`` (see web_throughput.py; created there on first use).
"""

from __future__ import annotations

# Top-level imports are stdlib only: this file also runs inside .venv-bench as the datatrove worker.
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BENCH_PY = REPO / ".venv-bench" / "bin" / "python"
N = 13
CORES = 2
PLANT_EVERY = 20
# datatrove's language codes (its Languages enum): "zh" would give its multilingual "xx" spaCy
# tokenizer, which keeps a run of Han characters as one token; "cmn" gives spaCy + jieba.
DT_LANG = {"en": "eng", "zh": "cmn"}


# ============================================================================================ data


def _pools() -> dict:
    from skycurate.samples.web import EN_PARAGRAPHS, ZH_PARAGRAPHS

    en = [s for p in EN_PARAGRAPHS for s in re.split(r"(?<=[.!?])\s+", p) if s]
    zh = [s + "。" for p in ZH_PARAGRAPHS for s in p.split("。") if s]
    vocab = sorted({w.strip(".,;:").lower() for s in en for w in s.split() if w.strip(".,;:").isalpha()})
    han = sorted({c for s in zh for c in s if "\u4e00" <= c <= "\u9fff"})
    return {"en": en, "zh": zh, "vocab": vocab, "han": han}


def make_items(n: int, seed: int, zh_share: float = 0.3) -> list[dict]:
    """Question/answer items: English ~40-70 words, Chinese ~50-90 characters."""
    rng, p = random.Random(seed), _pools()
    out = []
    for i in range(n):
        if rng.random() < zh_share:
            q = "".join(rng.choice(p["han"]) for _ in range(rng.randint(40, 80)))
            text = f"问题：{q}？答案：{rng.randint(1, 999)}"
            lang = "zh"
        else:
            q = " ".join(rng.choice(p["vocab"]) for _ in range(rng.randint(35, 60)))
            text = f"Question: {q.capitalize()}? Answer: the {rng.choice(p['vocab'])} is {rng.randint(1, 999)}."
            lang = "en"
        out.append({"item_id": f"q{i}", "lang": lang, "text": text})
    return out


def make_corpus(n: int, items: list[dict], seed: int) -> tuple[list[dict], dict[str, str]]:
    """Pages of 8-20 perturbed sample sentences (2 in 3 English); every 20th page holds one item verbatim."""
    rng, p = random.Random(seed), _pools()
    by_lang = {lang: [it for it in items if it["lang"] == lang] for lang in ("en", "zh")}
    docs, planted = [], {}
    for i in range(n):
        lang = "zh" if i % 3 == 2 else "en"
        sents = []
        for _ in range(rng.randint(8, 20)):
            s = rng.choice(p[lang])
            if lang == "en":
                s = " ".join(rng.choice(p["vocab"]) if rng.random() < 0.3 and w.isalpha() else w for w in s.split())
            else:
                s = "".join(rng.choice(p["han"]) if rng.random() < 0.15 and "\u4e00" <= c <= "\u9fff" else c for c in s)
            sents.append(s)
        doc_id = f"doc{i:07d}"
        if i % PLANT_EVERY == 0 and by_lang[lang]:
            item = rng.choice(by_lang[lang])
            sents.insert(len(sents) // 2, item["text"])
            planted[doc_id] = item["item_id"]
        docs.append({"id": doc_id, "lang": lang, "text": (" " if lang == "en" else "").join(sents)})
    return docs, planted


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


# ============================================================================================ skycurate


def sky_per_core(docs: list[dict], items: list[dict], planted: dict) -> dict:
    import pyarrow as pa

    from skycurate.schemas.leakage import DecontaminateConfig
    from skycurate.stages.leakage.decontaminate import build_index, scan_batch

    cfg = DecontaminateConfig(n=N)
    bench = pa.table({"benchmark": ["synth"] * len(items), "split": ["test"] * len(items),
                      "item_id": [it["item_id"] for it in items], "text": [it["text"] for it in items]})
    table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]})
    t0 = time.process_time()
    index = build_index(bench, cfg)
    index.contains(index.keys[:1])               # builds the Bloom filter, as a worker does on first use
    build_s = time.process_time() - t0
    scan_batch(table.slice(0, 10).to_batches()[0], index, cfg)   # warm: code point tables
    flagged: set[str] = set()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for batch in table.to_batches(max_chunksize=1000):
        _, matches = scan_batch(batch, index, cfg)
        flagged.update(matches.column("doc_id").to_pylist())
    return {"cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0, "index_build_cpu_s": build_s,
            **_quality(flagged, planted, len(docs))}


def sky_spark(docs: list[dict], items: list[dict], work: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skycurate.schemas.config import SparkConfig
    from skycurate.schemas.leakage import DecontaminateConfig
    from skycurate.spark import get_spark, map_batches
    from skycurate.stages.leakage.decontaminate import (
        build_index,
        decontaminate_on_spark,
    )

    cfg = DecontaminateConfig(n=N)
    folder = work / "corpus-parquet"
    folder.mkdir(exist_ok=True)
    table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]})
    for k in range(CORES * 2):
        pq.write_table(table.slice(k * len(docs) // (CORES * 2), len(docs) // (CORES * 2) + 1), folder / f"part-{k}.parquet")
    spark = get_spark(SparkConfig(master=f"local[{CORES}]", driver_memory="3g"))
    bench = pa.table({"benchmark": ["synth"] * len(items), "split": ["test"] * len(items),
                      "item_id": [it["item_id"] for it in items], "text": [it["text"] for it in items]})
    spark.range(4).repartition(CORES).mapInArrow(lambda it: it, "id long").count()   # start Python workers
    out = {}
    for run in ("cold", "warm"):
        t0 = time.perf_counter()
        index = build_index(bench, cfg)
        df = spark.read.parquet(str(folder))
        annotated, _ = decontaminate_on_spark(df, index, cfg, persist=False)
        annotated.write.format("noop").mode("overwrite").save()
        out[f"{run}_wall_s"] = time.perf_counter() - t0
    # Spark's own floor: the same read, an identity mapInArrow, the same sink.
    t0 = time.perf_counter()
    map_batches(spark.read.parquet(str(folder)), _identity, table.schema).write.format("noop").mode("overwrite").save()
    out["identity_wall_s"] = time.perf_counter() - t0
    spark.stop()
    out["wall_s"] = out["warm_wall_s"]
    return out


def _identity(batch):
    return batch


def sky_index_sizes(sizes: list[int]) -> list[dict]:
    import pyarrow as pa

    from skycurate.schemas.leakage import DecontaminateConfig
    from skycurate.stages.leakage.decontaminate import build_index

    cfg = DecontaminateConfig(n=N)
    out = []
    for n in sizes:
        items = make_items(n, seed=5, zh_share=0.0)
        bench = pa.table({"benchmark": ["synth"] * n, "split": ["test"] * n,
                          "item_id": [it["item_id"] for it in items], "text": [it["text"] for it in items]})
        t0 = time.perf_counter()
        index = build_index(bench, cfg)
        build = time.perf_counter() - t0
        out.append({"items": n, "ngrams": len(index.keys), "nbytes": index.nbytes, "bloom_nbytes": index.bloom_nbytes,
                    "text_bytes": sum(len(it["text"].encode()) for it in items), "build_s": build})
    return out


def _quality(flagged: set[str], planted: dict, n_docs: int) -> dict:
    found = len(flagged & set(planted))
    return {"recall": found / max(len(planted), 1), "false_positives": len(flagged - set(planted)), "docs": n_docs}


# ============================================================================================ datatrove (worker)


def _dt_hashes(texts: list[str], language: str, n: int) -> set[int]:
    """What NGramsDecontIndexer.compute_hashes(label) gives, for every text."""
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.text import ngrams, simplify_text
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    cfg = NGramsDecontConfig(n_grams=n)
    tok = load_word_tokenizer(language)
    hash_func = create_hash_func(cfg.hash_config)
    out: set[int] = set()
    for t in texts:
        tokens = tok.word_tokenize(simplify_text(t, cfg.norm_config))
        out.update(map(hash_func, map(" ".join, ngrams(tokens, n))))
    return out


def _dt_write_index(folder: Path, task: str, hashes: set[int]) -> int:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    arr = np.array(sorted(hashes), dtype=np.uint64)
    arr.tofile(folder / f"{task}.index.hashes")
    return arr.nbytes


def _dt_filter(folder: Path, language: str, n: int):
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter

    return NGramsDecontFilter(index_folder=str(folder), config=NGramsDecontConfig(n_grams=n), language=language)


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(x) for x in f]


def _dt_per_core(work: Path, n: int) -> dict:
    from datatrove.data import Document

    items = _read_jsonl(work / "items.jsonl")
    docs = _read_jsonl(work / "corpus.jsonl")
    planted = json.loads((work / "planted.json").read_text())
    flagged: set[str] = set()
    cpu = build = 0.0
    for lang, code in DT_LANG.items():
        t0 = time.process_time()
        hashes = _dt_hashes([it["text"] for it in items if it["lang"] == lang], code, n)
        _dt_write_index(work / f"dt-index-{lang}", "synth", hashes)
        build += time.process_time() - t0
        filt = _dt_filter(work / f"dt-index-{lang}", code, n)
        filt.load_index_hashes()
        batch = [Document(text=d["text"], id=d["id"]) for d in docs if d["lang"] == lang]
        filt.filter(Document(text="warm up the tokenizer", id="w"))
        c0 = time.process_time()
        for doc in batch:
            if filt.filter(doc) is not True:
                flagged.add(doc.id)
        cpu += time.process_time() - c0
    return {"cpu_s": cpu, "index_build_cpu_s": build, **_quality(flagged, planted, len(docs))}


def _dt_two_cores(work: Path, n: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader

    wall = 0.0
    for lang in ("en", "zh"):
        pipeline = [JsonlReader(str(work / f"shards-{lang}"), glob_pattern="*.jsonl"),
                    _dt_filter(work / f"dt-index-{lang}", DT_LANG[lang], n)]
        ex = LocalPipelineExecutor(pipeline=pipeline, tasks=CORES, workers=CORES,
                                   logging_dir=str(work / f"dt-logs-{lang}"))
        t0 = time.perf_counter()
        ex.run()
        wall += time.perf_counter() - t0
    return {"wall_s": wall}


def _dt_index_sizes(work: Path, n: int, sizes: list[int]) -> list[dict]:
    out = []
    for size in sizes:
        items = _read_jsonl(work / f"items-{size}.jsonl")
        t0 = time.perf_counter()
        hashes = _dt_hashes([it["text"] for it in items], DT_LANG["en"], n)
        on_disk = _dt_write_index(work / f"dt-size-{size}", "synth", hashes)
        build = time.perf_counter() - t0
        filt = _dt_filter(work / f"dt-size-{size}", DT_LANG["en"], n)
        filt.load_index_hashes()
        d = filt._index_hashes          # {hash: task name}; the int keys are separate objects
        loaded = sys.getsizeof(d) + sum(sys.getsizeof(k) for k in d)
        out.append({"items": size, "ngrams": len(hashes), "file_bytes": on_disk, "loaded_bytes": loaded,
                    "build_s": build})
        del filt
    return out


def _dt_worker(args) -> None:   # runs in .venv-bench
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    work = Path(args._work)
    res = {"per_core": _dt_per_core(work, N)}
    if not args.skip_spark:
        res["two_cores"] = _dt_two_cores(work, N)
    res["index_sizes"] = _dt_index_sizes(work, N, [int(s) for s in args.sizes.split(",")])
    Path(args._out).write_text(json.dumps(res))


# ============================================================================================ driver


def _fmt_bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--items", type=int, default=10000, help="benchmark items of the scan (30%% Chinese)")
    ap.add_argument("--sizes", default="1000,10000,100000", help="benchmark sizes of the index-memory table")
    ap.add_argument("--quick", action="store_true", help="2,000 docs, 2,000 items, sizes 1k and 10k")
    ap.add_argument("--skip-spark", action="store_true", help="no 2-core runs")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--_datatrove-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_work", help=argparse.SUPPRESS)
    ap.add_argument("--_out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._datatrove_worker:
        _dt_worker(args)
        return
    if args.quick:
        args.docs, args.items, args.sizes = 2000, 2000, "1000,10000"
    sizes = [int(s) for s in args.sizes.split(",")]
    if not BENCH_PY.exists():
        raise SystemExit(f"{BENCH_PY} missing: run benchmarks/web_throughput.py once to create .venv-bench")

    items = make_items(args.items, seed=1)
    docs, planted = make_corpus(args.docs, items, seed=2)
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    print(f"corpus: {len(docs)} docs, {mb:.1f} MB of text ({sum(d['lang'] == 'zh' for d in docs)} Chinese), "
          f"{len(planted)} with a planted item; benchmark: {len(items)} items; n = {N}", flush=True)

    with tempfile.TemporaryDirectory(prefix="decont-bench-") as tmp:
        work = Path(tmp)
        _write_jsonl(work / "items.jsonl", items)
        _write_jsonl(work / "corpus.jsonl", docs)
        (work / "planted.json").write_text(json.dumps(planted))
        for lang in ("en", "zh"):
            (work / f"shards-{lang}").mkdir()
            mine = [d for d in docs if d["lang"] == lang]
            for k in range(CORES):
                _write_jsonl(work / f"shards-{lang}" / f"part-{k}.jsonl", mine[k::CORES])
        for size in sizes:
            _write_jsonl(work / f"items-{size}.jsonl", make_items(size, seed=5, zh_share=0.0))

        env = dict(os.environ, LOGURU_LEVEL="ERROR", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
                   PYTHONWARNINGS="ignore")
        cmd = [str(BENCH_PY), str(Path(__file__).resolve()), "--_datatrove-worker", "--_work", str(work),
               "--_out", str(work / "dt.json"), "--sizes", args.sizes] + (["--skip-spark"] if args.skip_spark else [])
        print("datatrove (in .venv-bench) ...", flush=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit("datatrove worker failed:\n" + "\n".join(proc.stderr.strip().splitlines()[-20:]))
        dt = json.loads((work / "dt.json").read_text())

        print("skycurate ...", flush=True)
        sky = {"per_core": sky_per_core(docs, items, planted)}
        if not args.skip_spark:
            sky["two_cores"] = sky_spark(docs, items, work)
        sky["index_sizes"] = sky_index_sizes(sizes)

    n_docs = len(docs)
    print(f"\n== scan throughput, {n_docs} docs / {mb:.1f} MB, {len(items)} benchmark items, {N}-grams ==")
    print(f"{'':34}{'skycurate':>16}{'datatrove':>16}{'ratio':>8}")

    def line(label: str, a: float, b: float, unit: str) -> None:
        print(f"{label:34}{a:>12.1f} {unit:<3}{b:>12.1f} {unit:<3}{a / b if b else float('nan'):>7.1f}x")

    s, d = sky["per_core"], dt["per_core"]
    line("per core: docs / CPU s", n_docs / s["cpu_s"], n_docs / d["cpu_s"], "")
    line("per core: MB / CPU s", mb / s["cpu_s"], mb / d["cpu_s"], "")
    if "two_cores" in sky:
        wd = dt["two_cores"]["wall_s"]
        for run in ("cold", "warm"):
            ws = sky["two_cores"][f"{run}_wall_s"]
            line(f"{CORES} cores ({run} Spark): docs / s", n_docs / ws, n_docs / wd, "")
            line(f"{CORES} cores ({run} Spark): MB / s / core", mb / ws / CORES, mb / wd / CORES, "")
        wi = sky["two_cores"]["identity_wall_s"]
        print(f"{'  Spark floor (identity mapInArrow)':34}{n_docs / wi:>12.1f} docs/s  (read + Arrow round trip + sink, no scan)")
    print(f"{'recall (planted docs caught)':34}{s['recall']:>16.1%}{d['recall']:>16.1%}")
    print(f"{'false positives (docs)':34}{s['false_positives']:>16}{d['false_positives']:>16}")
    print(f"{'index build, CPU s':34}{s['index_build_cpu_s']:>16.2f}{d['index_build_cpu_s']:>16.2f}")

    print(f"\n== n-gram index memory vs benchmark size (English items, ~{N}-grams) ==")
    print(f"{'items':>8}{'text':>10}{'n-grams':>10}{'sky index':>12}{'sky bloom':>11}{'sky build':>11}"
          f"{'dt file':>10}{'dt loaded':>11}{'dt build':>10}{'mem ratio':>10}")
    for a, b in zip(sky["index_sizes"], dt["index_sizes"]):
        print(f"{a['items']:>8}{_fmt_bytes(a['text_bytes']):>10}{a['ngrams']:>10}{_fmt_bytes(a['nbytes']):>12}"
              f"{_fmt_bytes(a['bloom_nbytes']):>11}{a['build_s']:>10.2f}s{_fmt_bytes(b['file_bytes']):>10}"
              f"{_fmt_bytes(b['loaded_bytes']):>11}{b['build_s']:>9.2f}s"
              f"{b['loaded_bytes'] / (a['nbytes'] + a['bloom_nbytes']):>9.1f}x")
    print("\nsky index = hashes + item numbers + item table (broadcast); sky bloom = built on each worker;"
          "\ndt loaded = the Python dict NGramsDecontFilter loads its index into (dict + int keys, sys.getsizeof);"
          "\nmem ratio = dt loaded / (sky index + bloom). datatrove stops at a document's first match and drops it;"
          "\nskycurate finds every match and cuts it out (GPT-3 mode).")
    if args.json:
        Path(args.json).write_text(json.dumps({"skycurate": sky, "datatrove": dt, "docs": n_docs, "mb": mb}, indent=1))


if __name__ == "__main__":
    main()
