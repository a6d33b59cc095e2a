"""A tiny vision-language teacher (Idefics3: a small vision tower and a Llama), built offline in seconds.

Why Idefics3: it runs in transformers and in vLLM on CPU without torchvision, which this project's
environments do not carry (Qwen2-VL's and the LLaVA family's processors import it). Trained for a few
dozen steps to name the colour of a plain picture, so its greedy answer visibly depends on the image:
tests use it to prove that images reach each engine. An image becomes 20 ``<image>`` tokens when
square (tiles of 56 px plus an overview), 12 at 3:1.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

ROW_COL = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
SPECIALS = ["<unk>", "<|endoftext|>", "<pad>", "<fake_token_around_image>", "<image>", "<end_of_utterance>",
            "<global-img>", *ROW_COL]

# Idefics3 style ("User:<image>question<end_of_utterance>\nAssistant:"). Content may be a string or a
# list of parts; image parts are {"type": "image"} (transformers, vLLM) or {"type": "image_url"}.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ message['role'] | capitalize }}:"
    "{%- if message['content'] is string -%}{{ ' ' ~ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] in ('image', 'image_url') -%}<image>"
    "{%- elif part['type'] == 'text' -%}{{ ' ' ~ part['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "<end_of_utterance>{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}Assistant:{%- endif -%}"
)

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220), "yellow": (230, 220, 30),
          "white": (245, 245, 245), "black": (10, 10, 10)}
QUESTIONS = ["What color is the image?", "Which colour is this picture?", "Name the color.",
             "Describe the image in one word."]


def _corpus(seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ["the", "a", "image", "picture", "photo", "shows", "is", "of", "color", "colour", "this", "that",
             "what", "which", "name", "describe", "in", "one", "word", "User", "Assistant", "System",
             "you", "are", "helpful", "and", "small", "large", "square", "wide", "tall", "left", "right",
             "first", "second", "both", "images", "same", "different", "yes", "no"] + list(COLORS)
    out = [f"User: {q} Assistant: {c}." for q in QUESTIONS for c in COLORS] * 4
    out += [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + "." for _ in range(600)]
    return out


def _tokenizer(seed: int, vocab_size: int = 400):
    """Byte-level BPE (``tokenizers``) with the Idefics3 special tokens; no BOS/EOS post-processor
    (the chat template spells out what the model needs; vLLM's chat path adds no special tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<end_of_utterance>",
                                   pad_token="<pad>", padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _solid(color: str, size: tuple[int, int]):
    from PIL import Image
    return Image.new("RGB", size, COLORS[color])


def solid_png(color: str, size: tuple[int, int] = (56, 56)) -> bytes:
    """A plain picture of one of ``COLORS``, PNG-encoded (what a prompt table holds)."""
    import io

    buf = io.BytesIO()
    _solid(color, size).save(buf, format="PNG")
    return buf.getvalue()


def _train(model, processor, steps: int, seed: int, lr: float = 3e-3, batch: int = 8) -> list[float]:
    """Colour naming: user = [image, question], assistant = colour word + <end_of_utterance>.
    Loss on the answer tokens only; left-padded prompts, answers appended (right-padded)."""
    import torch

    tok = processor.tokenizer
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        size = rng.choice([(56, 56), (112, 112), (112, 56), (56, 112), (80, 80)])
        colors = [rng.choice(list(COLORS)) for _ in range(batch)]
        prompts = [processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": rng.choice(QUESTIONS)}]}],
            add_generation_prompt=True, tokenize=False) for _ in colors]
        enc = processor(text=prompts, images=[[_solid(c, size)] for c in colors], return_tensors="pt", padding=True)
        ans = [tok(" " + c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for c in colors]
        width, plen = max(len(a) for a in ans), enc["input_ids"].shape[1]
        ans_ids = torch.full((batch, width), tok.pad_token_id)
        ans_mask = torch.zeros((batch, width), dtype=torch.long)
        labels = torch.full((batch, plen + width), -100)
        for b, a in enumerate(ans):
            ans_ids[b, :len(a)] = torch.tensor(a)
            ans_mask[b, :len(a)] = 1
            labels[b, plen:plen + len(a)] = torch.tensor(a)
        inputs = dict(enc, input_ids=torch.cat([enc["input_ids"], ans_ids], 1),
                      attention_mask=torch.cat([enc["attention_mask"], ans_mask], 1))
        loss = model(**inputs, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(loss.item(), 4))
    model.eval()
    return losses


def build_tiny_vlm(out_dir, seed: int = 0, train_steps: int = 60) -> Path:
    """Build (random weights from ``seed``), optionally train, and save a tiny Idefics3 into ``out_dir``."""
    import torch
    from transformers import (GenerationConfig, Idefics3Config, Idefics3ForConditionalGeneration,
                              Idefics3Processor, LlamaConfig)
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer(seed)
    image_size, patch, scale = 56, 14, 2
    image_seq_len = (image_size // patch) ** 2 // scale ** 2                       # 4 tokens per tile
    # PIL backend (no torchvision). Longest edge -> 112, tiles of 56 (+ a global 56x56 view).
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 2 * image_size},
                                                max_image_size={"longest_edge": image_size},
                                                do_image_splitting=True)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=image_seq_len,
                                  chat_template=CHAT_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<image>", "<end_of_utterance>", "<pad>")}
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=image_size, patch_size=patch,
                                           initializer_range=0.05),
        text_config=LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, head_dim=32,
                                max_position_embeddings=1024, rms_norm_eps=1e-5, initializer_range=0.05,
                                bos_token_id=None, eos_token_id=ids["<end_of_utterance>"], pad_token_id=ids["<pad>"],
                                tie_word_embeddings=False),
        image_token_id=ids["<image>"], scale_factor=scale, tie_word_embeddings=False, pad_token_id=ids["<pad>"],
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    losses = _train(model, processor, train_steps, seed) if train_steps else []
    model.generation_config = GenerationConfig(eos_token_id=ids["<end_of_utterance>"], pad_token_id=ids["<pad>"],
                                               do_sample=False)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    # 5.24 stores the top-level pad id as "_pad_token_id"; 5.19 (.venv-vllm) reads "pad_token_id" and
    # otherwise defaults to 128002 (outside the vocabulary: a warning on every load). Write both.
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["pad_token_id"] = ids["<pad>"]
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (out / "tiny_vlm.json").write_text(json.dumps(
        {"seed": seed, "train_steps": train_steps, "losses_every_10": losses[::10] + losses[-1:],
         "build_seconds": round(time.perf_counter() - t0, 2)}, indent=1))
    return out

