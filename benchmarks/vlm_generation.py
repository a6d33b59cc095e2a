"""Tokens/s of transformers VLM generation (image + text prompts) by batch size: skycurate vs plain HF.

Same model folder, same prompts (one distinct picture each, PNG-encoded as a prompt table holds
them), same greedy settings and ``max_new_tokens``, same batch size, in one run:

- ``skycurate``: ``TransformersGenerator.generate(texts, params, images=...)`` (the distill flow's
  transformers backend: ``AutoProcessor`` + ``AutoModelForImageTextToText``, PNG decoding, left
  padding, longest prompts first);
- ``plain HF``: a loop over the prompts in their order, ``batch_size`` at a time: decode the PNGs
  with PIL, ``processor(text=..., images=..., padding=True)``, ``model.generate`` (left padding;
  the same EOS and pad ids as the skycurate side), completion tokens counted the same way (up to
  and including EOS, padding excluded).

Prompts are rendered with the processor's chat template (user turn = [image, question]). Model
loading is not timed; each side has one warm-up batch at each batch size. Prints, per batch size,
completion tokens/s and prompts/s of both sides, their ratio, and how many greedy answers are the
same text; also the image tokens per prompt.

    python benchmarks/vlm_generation.py --model /models/SmolVLM-256M-Instruct    # a GPU: bf16, 1,4,16,64
    python benchmarks/vlm_generation.py --prompts 8 --max-new-tokens 16 --batch-sizes 1,4   # CPU smoke run

Without ``--model`` the tiny Idefics3 of ``skycurate.samples.vlm`` is built in a temp folder
(random weights unless ``--train-steps``: it then almost never emits EOS, so the figure is decode
throughput at a fixed length). With a real VLM, answers end at EOS at their own lengths.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

QUESTIONS = ["Describe this picture in detail.", "What do you see in this image? Answer in full sentences.",
             "Write a short caption for this image, then list the main colours.",
             "Describe the shapes, colours and textures in this picture, one by one."]


def make_images(n: int, size: tuple[int, int], seed: int) -> list[bytes]:
    """``n`` distinct pictures (smooth random colour fields with a few rectangles), PNG-encoded."""
    import numpy as np
    from PIL import Image, ImageDraw

    out = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), "RGB")
        img = small.resize(size, Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x0, y0 = int(rng.integers(0, size[0] * 3 // 4)), int(rng.integers(0, size[1] * 3 // 4))
            x1 = x0 + int(rng.integers(size[0] // 8, size[0] // 4))
            y1 = y0 + int(rng.integers(size[1] // 8, size[1] // 4))
            draw.rectangle([x0, y0, x1, y1], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def make_texts(processor, n: int) -> list[str]:
    """Chat-rendered prompts (the image placeholder where the template puts it), distinct per prompt."""
    texts = []
    for i in range(n):
        q = QUESTIONS[i % len(QUESTIONS)] + (f" This is picture number {i}." if i % 3 else "")
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
        texts.append(processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False))
    return texts


def image_token_id(model, processor) -> int | None:
    for cfg in (model.config, getattr(model.config, "text_config", None)):
        for key in ("image_token_id", "image_token_index"):
            v = getattr(cfg, key, None) if cfg is not None else None
            if isinstance(v, int):
                return v
    tok = getattr(processor, "image_token", None)
    return processor.tokenizer.convert_tokens_to_ids(tok) if isinstance(tok, str) else None


def completion_count(ids: list[int], eos: int | None, pad: int | None) -> tuple[list[int], int]:
    """As ``TransformersGenerator`` counts: tokens up to and including EOS, padding dropped."""
    if eos is not None and eos in ids:
        ids = ids[:ids.index(eos)]
        return ids, len(ids) + 1
    if pad is not None and pad != eos:
        ids = [t for t in ids if t != pad]
    return ids, len(ids)


class PlainHF:
    """The peer: AutoProcessor + AutoModelForImageTextToText + ``model.generate``, nothing else."""

    def __init__(self, folder: str, device: str, dtype) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        self.processor.tokenizer.padding_side = "left"
        self.model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True,
                                                                 dtype=dtype).to(device).eval()
        self.device = device
        tok = self.processor.tokenizer
        self.eos = tok.eos_token_id
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or tok.unk_token_id)

    def generate(self, texts: list[str], pngs: list[bytes], bs: int, max_new_tokens: int) -> list[tuple[str, int]]:
        import torch
        from PIL import Image

        out = []
        for start in range(0, len(texts), bs):
            imgs = [Image.open(io.BytesIO(b)).convert("RGB") for b in pngs[start:start + bs]]
            enc = self.processor(text=texts[start:start + bs], images=imgs, return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                gen = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                          top_p=None, top_k=None, pad_token_id=self.pad, eos_token_id=self.eos)
            width = enc["input_ids"].shape[1]
            for row in gen[:, width:].tolist():
                ids, n = completion_count(row, self.eos, self.pad)
                out.append((self.processor.tokenizer.decode(ids, skip_special_tokens=True), n))
        return out


def cast_like_from_pretrained(model, dtype) -> None:
    """``model.to(dtype)`` but float32 buffers (RoPE ``inv_freq``) stay float32, as
    ``from_pretrained(dtype=...)`` leaves them: a plain ``.to(bfloat16)`` rounds them too, and the
    greedy answers of the two sides then drift apart."""
    import torch

    keep = {n: b.detach().clone() for n, b in model.named_buffers() if b.dtype == torch.float32}
    model.to(dtype)
    for name, buf in keep.items():
        mod_name, _, attr = name.rpartition(".")
        mod = model.get_submodule(mod_name) if mod_name else model
        setattr(mod, attr, buf.to(getattr(mod, attr).device))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def _timed(device: str, fn):
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    res = fn()
    _sync(device)
    secs = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return res, secs, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a local VLM folder (processor + weights); default: build the tiny Idefics3")
    ap.add_argument("--train-steps", type=int, default=0,
                    help="training steps of the built tiny VLM (default 0: random weights)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cuda:1, cpu")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                    help="auto: bfloat16 on cuda, float32 on cpu")
    ap.add_argument("--batch-sizes", help="default 1,4,16,64 on cuda, 1,2,4 on cpu")
    ap.add_argument("--prompts", type=int, help="default 128 on cuda, 16 on cpu")
    ap.add_argument("--max-new-tokens", type=int, help="default 128 on cuda, 32 on cpu")
    ap.add_argument("--image-size", default="384x384", help="WxH (or one number) of each prompt's picture")
    ap.add_argument("--repeat", type=int, default=1,
                    help="timed runs per side and batch size (median; the order alternates)")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", "--json", dest="out", help="write the results (JSON) here")
    args = ap.parse_args()

    import torch
    import transformers

    from skycurate.connectors.llm.generation import TransformersGenerator
    from skycurate.schemas.generation import SamplingParams

    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    gpu = device.startswith("cuda")
    dtype_name = args.dtype if args.dtype != "auto" else ("bfloat16" if gpu else "float32")
    dtype = getattr(torch, dtype_name)
    sizes = [int(x) for x in (args.batch_sizes or ("1,4,16,64" if gpu else "1,2,4")).split(",")]
    n_prompts = args.prompts or (128 if gpu else 16)
    max_new = args.max_new_tokens or (128 if gpu else 32)
    w, _, h = args.image_size.lower().partition("x")
    image_size = (int(w), int(h or w))
    name = (torch.cuda.get_device_name(torch.device(device)) if gpu
            else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            folder = str(Path(args.model).expanduser())
            model_name = Path(folder).name
        else:
            from skycurate.samples.vlm import build_tiny_vlm

            print(f"building the tiny Idefics3 (train_steps={args.train_steps}) ...", flush=True)
            folder = str(build_tiny_vlm(Path(tmp, "tiny-vlm"), seed=args.seed, train_steps=args.train_steps))
            model_name = f"tiny Idefics3 (samples.vlm, train_steps={args.train_steps})"

        sky = TransformersGenerator(folder, device=device, batch_size=sizes[0])
        if sky.processor is None:
            raise SystemExit(f"{folder} has no processor (preprocessor_config.json / processor_config.json): "
                             "not a VLM folder")
        if dtype != torch.float32:      # TransformersGenerator loads float32: cast it
            cast_like_from_pretrained(sky.model, dtype)
        hf = PlainHF(folder, device, dtype)
        n_params = sum(p.numel() for p in hf.model.parameters())

        texts = make_texts(hf.processor, n_prompts)
        pngs = make_images(n_prompts, image_size, args.seed)
        from PIL import Image

        one = hf.processor(text=texts[:1], images=[Image.open(io.BytesIO(pngs[0])).convert("RGB")], return_tensors="pt",
                           add_special_tokens=False)
        img_tok = image_token_id(hf.model, hf.processor)
        image_tokens = int((one["input_ids"] == img_tok).sum()) if img_tok is not None else None
        prompt_tokens = int(one["input_ids"].shape[1])
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new, seed=args.seed)
        images = [[b] for b in pngs]

        def run_sky():
            outs = sky.generate(texts, params, images=images, add_special_tokens=False)
            return [(g[0].text, g[0].completion_tokens, g[0].finish_reason) for g in outs]

        def run_hf():
            return [(t, n, None) for t, n in hf.generate(texts, pngs, sky.batch_size, max_new)]

        rows = []
        for bs in sizes:
            sky.batch_size = bs
            print(f"batch {bs}: warm-up ...", flush=True)
            sky.generate(texts[:bs], params, images=images[:bs], add_special_tokens=False)
            hf.generate(texts[:bs], pngs[:bs], bs, max_new)
            runs = {"skycurate": [], "hf": []}
            res = {}
            for r in range(args.repeat):
                order = [("skycurate", run_sky), ("hf", run_hf)]
                for side, fn in (order if r % 2 == 0 else order[::-1]):
                    out, secs, peak = _timed(device, fn)
                    runs[side].append((secs, peak))
                    res[side] = out
            row = {"batch_size": bs}
            for side in ("skycurate", "hf"):
                secs = statistics.median(s for s, _ in runs[side])
                toks = sum(n for _, n, _ in res[side])
                row[side] = {"seconds": round(secs, 3), "seconds_all": [round(s, 3) for s, _ in runs[side]],
                             "completion_tokens": toks, "tokens_per_s": round(toks / secs, 1),
                             "prompts_per_s": round(n_prompts / secs, 2)}
                if gpu:
                    row[side]["peak_gib"] = round(max(p for _, p in runs[side]), 2)
            row["skycurate"]["finished_at_length"] = sum(1 for *_, why in res["skycurate"] if why == "length")
            row["ratio"] = round(row["skycurate"]["tokens_per_s"] / row["hf"]["tokens_per_s"], 3)
            row["same_text"] = sum(a[0] == b[0] for a, b in zip(res["skycurate"], res["hf"], strict=True))
            rows.append(row)
            print(f"batch {bs}: skycurate {row['skycurate']['tokens_per_s']:,.1f} tok/s, "
                  f"plain HF {row['hf']['tokens_per_s']:,.1f} tok/s", flush=True)
        sky.close()

    print()
    print(f"transformers {transformers.__version__} VLM generation, {model_name} ({n_params / 1e6:.1f}M params, "
          f"{dtype_name}), {name}")
    print(f"{n_prompts} prompts, 1 picture of {image_size[0]}x{image_size[1]} each -> {image_tokens} image tokens "
          f"per prompt ({prompt_tokens} prompt tokens in all for prompt 0), up to {max_new} new tokens, greedy")
    head = (f"{'batch':>6}{'sky tok/s':>11}{'HF tok/s':>10}{'ratio':>7}{'sky prm/s':>11}{'HF prm/s':>10}"
            f"{'sky tok':>9}{'HF tok':>8}{'same':>7}")
    if gpu:
        head += f"{'sky GiB':>9}{'HF GiB':>8}"
    print(head)
    for r in rows:
        s, p = r["skycurate"], r["hf"]
        line = (f"{r['batch_size']:>6}{s['tokens_per_s']:>11,.1f}{p['tokens_per_s']:>10,.1f}{r['ratio']:>7.2f}"
                f"{s['prompts_per_s']:>11,.2f}{p['prompts_per_s']:>10,.2f}{s['completion_tokens']:>9,}"
                f"{p['completion_tokens']:>8,}{r['same_text']:>4}/{n_prompts:<2}")
        if gpu:
            line += f"{s['peak_gib']:>9.1f}{p['peak_gib']:>8.1f}"
        print(line)
    print("tok/s: completion tokens (EOS included) per second; ratio: skycurate / plain HF; "
          "same: greedy answers with identical text")
    result = {"device": name, "model": model_name, "model_dir": args.model, "params": n_params, "dtype": dtype_name,
              "transformers": transformers.__version__, "torch": torch.__version__, "prompts": n_prompts,
              "max_new_tokens": max_new, "image_size": list(image_size), "image_tokens_per_prompt": image_tokens,
              "prompt_tokens_prompt0": prompt_tokens, "repeat": args.repeat, "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
