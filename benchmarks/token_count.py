"""Token counting per core: skycurate's token stage on Spark vs a plain ``tokenizers`` batch encode.

Same texts, same tokenizer, in one run:

- plain: one process, ``Tokenizer.encode_batch`` over batches of ``--batch`` texts, first with the
  library's Rust thread pool off (``TOKENIZERS_PARALLELISM=false``: one core), then on (every core);
- skycurate: ``stages.tokens.tokens_on_spark`` over the texts published as a catalog dataset, read
  with ``skycurate.spark.read_dataset`` on ``local[N]``, summed on the cluster (Parquet read,
  ``mapInArrow``, the count, the aggregate): the first job (Python workers start, each loads the
  tokenizer) and the best of the warm ones. Spark runs one task per core, so the stage keeps the
  library's thread pool off in its workers (``--worker-threads on`` turns it on, for comparison);
- with ``--flow``: the whole ``skycurate run tokens`` command in a fresh process (Prefect, Spark
  start, scratch write, stats, publish).

Tokens/s per core = tokens / wall seconds / cores used. Both sides must report the same total (checked).

Real text, nothing synthetic: English = the Vim help files (``/usr/share/vim/vim*/doc/*.txt``) in
sections of about ``--doc-chars`` characters; Chinese = the zh_CN man pages, the Chinese Vim tutor
and the zh_CN message catalogs (``/usr/share/locale/zh_CN/LC_MESSAGES/*.mo``), in documents of about
a third of that. The tokenizer: ``--tokenizer`` (a folder or tokenizer.json), else a byte-level BPE
(``--vocab`` tokens) trained on every other document of this corpus, since no pretrained tokenizer is
on these machines (the script says which it used).

Usage: .venv/bin/python benchmarks/token_count.py [--cores 2] [--docs 0 (all)] [--tokenizer PATH]
       [--vocab 32000] [--batch 1024] [--repeat 2] [--worker-threads off|on] [--flow] [--json F]
"""

from __future__ import annotations

import argparse
import gettext
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _chunks(paragraphs: list[str], size: int) -> list[str]:
    out, cur = [], ""
    for p in paragraphs:
        if cur and len(cur) + len(p) > size:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{p}" if cur else p
    if cur:
        out.append(cur)
    return out


def english_docs(size: int) -> list[tuple[str, str]]:
    """(source, text): the Vim help files, split at blank lines into documents of about ``size`` chars."""
    docs = []
    for path in sorted(glob.glob("/usr/share/vim/vim*/doc/*.txt")):
        text = Path(path).read_text(encoding="utf-8", errors="ignore")
        paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        docs += [("vim-help", t) for t in _chunks(paras, size)]
    return docs


def chinese_docs(size: int) -> list[tuple[str, str]]:
    """(source, text): zh_CN man pages (troff requests and escapes removed), the Chinese Vim tutor and
    the translated strings of the zh_CN message catalogs."""
    han = re.compile(r"[\u4e00-\u9fff]")
    docs = []
    for path in sorted(glob.glob("/usr/share/man/zh_CN/*/*.gz")):
        text = gzip.open(path, "rt", encoding="utf-8", errors="ignore").read()
        text = "\n".join(line for line in text.splitlines() if not line.startswith((".", "'")))
        text = re.sub(r"\\[&(]..|\\f[BIRP]|\\-|\\\||\\[a-z]", "", text)
        docs += [("zh-man", t) for t in _chunks([p for p in text.split("\n") if p.strip()], size)]
    for path in sorted(glob.glob("/usr/share/vim/vim*/tutor/tutor.zh_cn.utf-8")):
        paras = [p.strip() for p in re.split(r"\n\s*\n", Path(path).read_text(errors="ignore")) if p.strip()]
        docs += [("vim-tutor-zh", t) for t in _chunks(paras, size)]
    for path in sorted(glob.glob("/usr/share/locale/zh_CN/LC_MESSAGES/*.mo")):
        try:
            with open(path, "rb") as f:
                values = gettext.GNUTranslations(f)._catalog.values()
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        strings = sorted({v.strip() for v in values if isinstance(v, str) and han.search(v)})
        docs += [("zh-messages", t) for t in _chunks(strings, size)]
    return docs


def build_corpus(doc_chars: int, limit: int) -> list[dict]:
    en = english_docs(doc_chars)
    zh = chinese_docs(doc_chars // 3)
    rows = [{"id": f"{lang}-{i:06d}", "text": text, "lang": lang, "source": source}
            for lang, docs in (("en", en), ("zh", zh)) for i, (source, text) in enumerate(docs)]
    rows.sort(key=lambda r: r["id"][3:])   # interleave the languages
    return rows[:limit] if limit else rows


def train_tokenizer(texts: list[str], path: Path, vocab: int) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(path))
    return path


def time_plain(tok_path: str, texts: list[str], batch: int, parallel: bool) -> tuple[float, float, int]:
    """(wall s, CPU s of the process, tokens): ``encode_batch`` in this process."""
    from tokenizers import Tokenizer

    os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
    tok = Tokenizer.from_file(tok_path)
    tok.encode_batch(texts[:batch], add_special_tokens=False)   # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    total = 0
    for i in range(0, len(texts), batch):
        total += sum(len(e.ids) for e in tok.encode_batch(texts[i:i + batch], add_special_tokens=False))
    return time.perf_counter() - t0, time.process_time() - c0, total


def time_spark(store: str, ref, tok_path: str, cores: int, batch: int, repeat: int) -> tuple[list[float], int]:
    """(wall s of each job, tokens): the token stage on ``local[cores]``, summed on the cluster."""
    from pyspark.sql import functions as F

    from skycurate.schemas.config import SparkConfig
    from skycurate.schemas.tokens import TOKENS_COLUMN, TokenizerConfig
    from skycurate.spark import balanced, get_spark, read_dataset
    from skycurate.stages.tokens import tokens_on_spark

    session = get_spark(SparkConfig(master=f"local[{cores}]"))
    cfg = TokenizerConfig(tokenizer=tok_path, batch_rows=batch)
    times, total = [], 0
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        counted = tokens_on_spark(balanced(read_dataset(session, ref)), cfg)
        total = counted.agg(F.sum(TOKENS_COLUMN).alias("t")).first()["t"]
        times.append(time.perf_counter() - t0)
    session.stop()
    return times, int(total)


def time_flow(store: str, dataset: str, tok_path: str, cores: int) -> tuple[float, int]:
    env = {**os.environ, "SKYCURATE_SPARK_MASTER": f"local[{cores}]"}
    env.pop("PREFECT_API_URL", None)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "skycurate.cli", "run", "tokens", "--dataset", dataset,
                          "--tokenizer", tok_path, "--store", store, "--json", "--force"],
                         capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"skycurate run tokens failed:\n{res.stderr[-3000:]}")
    return wall, json.loads(res.stdout[res.stdout.index("{"):])["stats"]["tokens"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--docs", type=int, default=0, help="documents used (0 = the whole corpus)")
    ap.add_argument("--doc-chars", type=int, default=3000)
    ap.add_argument("--tokenizer", help="a tokenizer folder or tokenizer.json; default: a BPE trained here")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2, help="warm Spark jobs after the first")
    ap.add_argument("--flow", action="store_true", help="also time `skycurate run tokens` end to end")
    ap.add_argument("--worker-threads", choices=("off", "on"), default="off",
                    help="the Rust thread pool inside each Spark Python worker: off (the stage's default) or on "
                         "(TOKENIZERS_PARALLELISM=true)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    import pyarrow as pa

    from skycurate.catalog import Catalog

    rows = build_corpus(args.doc_chars, args.docs)
    texts = [r["text"] for r in rows]
    n_chars = sum(len(t) for t in texts)
    by_lang = {lang: sum(1 for r in rows if r["lang"] == lang) for lang in ("en", "zh")}
    print(f"corpus: {len(rows):,} real documents ({by_lang['en']:,} en Vim help, {by_lang['zh']:,} zh man pages / "
          f"tutor / message catalogs), {n_chars / 1e6:.1f} M characters")
    with tempfile.TemporaryDirectory(prefix="token-bench-") as tmp:
        if args.tokenizer:
            tok_path = str(Path(args.tokenizer) / "tokenizer.json" if Path(args.tokenizer).is_dir() else args.tokenizer)
            print(f"tokenizer: {tok_path}")
        else:
            t0 = time.perf_counter()
            tok_path = str(train_tokenizer(texts[::2], Path(tmp) / "tokenizer.json", args.vocab))
            print(f"tokenizer: byte-level BPE, vocab {args.vocab:,}, trained here on every other document of this "
                  f"corpus in {time.perf_counter() - t0:.1f}s (no pretrained tokenizer on this machine)")
        store = os.path.join(tmp, "store")
        ref = Catalog(store).publish("bench/docs", pa.Table.from_pylist(rows), max_rows_per_file=20_000)

        results = []
        wall, cpu, tokens = time_plain(tok_path, texts, args.batch, parallel=False)
        results.append(("plain encode_batch, 1 thread", 1, wall, cpu, tokens))
        wall, cpu, tokens = time_plain(tok_path, texts, args.batch, parallel=True)
        cpus = os.cpu_count() or 1
        results.append((f"plain encode_batch, Rust threads ({cpus} cores)", cpus, wall, cpu, tokens))
        os.environ.pop("TOKENIZERS_PARALLELISM", None)
        if args.worker_threads == "on":   # inherited by the Spark JVM and its Python workers
            os.environ["TOKENIZERS_PARALLELISM"] = "true"
        times, spark_tokens = time_spark(store, ref, tok_path, args.cores, args.batch, args.repeat)
        results.append((f"skycurate stage, Spark local[{args.cores}], first job", args.cores, times[0], None,
                        spark_tokens))
        results.append((f"skycurate stage, Spark local[{args.cores}], warm (best of {args.repeat})", args.cores,
                        min(times[1:]), None, spark_tokens))
        if args.flow:
            wall, flow_tokens = time_flow(store, ref.label, tok_path, args.cores)
            results.append((f"skycurate run tokens (whole command), local[{args.cores}]", args.cores, wall, None,
                            flow_tokens))

    base = results[0][4]
    print(f"\n{'method':<58} {'cores':>5} {'wall s':>8} {'tokens':>12} {'tokens/s':>11} {'tokens/s/core':>14}")
    out = []
    for name, cores, wall, cpu, tokens in results:
        rate = tokens / wall
        print(f"{name:<58} {cores:>5} {wall:>8.2f} {tokens:>12,} {rate:>11,.0f} {rate / cores:>14,.0f}"
              + (f"   ({tokens / cpu:,.0f} tokens per CPU s)" if cpu else ""))
        out.append({"method": name, "cores": cores, "wall_s": round(wall, 3), "tokens": tokens,
                    "tokens_per_s": round(rate), "tokens_per_s_per_core": round(rate / cores)})
    same = all(r[4] == base for r in results)
    warm = results[3]
    print(f"\ntotals equal across methods: {same}")
    print(f"per core, warm Spark stage / plain single-thread encode_batch: "
          f"{(warm[4] / warm[2] / warm[1]) / (base / results[0][2]):.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"docs": len(rows), "chars": n_chars, "results": out,
                                               "totals_equal": same}, indent=2))
    if not same:
        raise SystemExit("token totals differ between methods")


if __name__ == "__main__":
    main()
