# grutext: `make demo` and `make test` do all set-up on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# The benchmark data folder (<name>/{train,validation,test}.jsonl) for test-slow, bench and results: DATA=DIR.
DATA ?=
export HF_HUB_OFFLINE ?= 1

.PHONY: install install-bench demo test test-slow lint bench results clean need-data

install: $(VENV)/.installed

# torch is pinned by constraints.txt (a CPU wheel); pyproject.toml keeps a broad range.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@echo "building the native GRU kernel (once per machine, about a minute)" >&2
	$(PY) -c 'from grutext.fast import native; native.kernel()'
	touch $@

data/bbc/train: data/bbc/prepare.py | install
	$(PY) data/bbc/prepare.py

demo: install data/bbc/train
	$(BIN)/grutext train data/bbc --output models/bbc --overwrite
	$(BIN)/grutext evaluate --model models/bbc data/bbc
	printf '%s\n' \
	  "Shares in the bank rose after profits beat forecasts for the third quarter." \
	  "The striker scored twice as United won the cup final." \
	  "The new phone has a faster chip and a better camera." \
	  | $(BIN)/grutext predict --model models/bbc --format tsv
	$(BIN)/grutext info --model models/bbc

lint: install
	$(BIN)/ruff check grutext tests bench data
	$(BIN)/ruff format --check grutext tests bench data
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# Slow tests: signals and pipes at scale, and training on real data from DATA=DIR (skipped without it).
test-slow: install
	GRUTEXT_DATA=$(DATA) $(BIN)/pytest -q -m slow

install-bench: install
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,bench]'

need-data:
	@test -n "$(DATA)" || { echo "Error: pass the benchmark data folder: make $(MAKECMDGOALS) DATA=DIR" >&2; exit 2; }

# Speed: grutext vs a tutorial GRU and fastText on real data; writes BENCHMARKS.md (15 minutes to an hour, by host).
bench: install-bench need-data
	$(PY) bench/bench.py --data $(DATA) --datasets sst2,imdb

# Accuracy: default settings and --vectors on every benchmark dataset, three seeds, vs fastText; goes on from the
# rows in docs/rows/results.jsonl (runs only what they lack) and rewrites the table in docs/results.md.
results: install-bench need-data
	$(PY) bench/results.py --data $(DATA) --seeds 13,14,15 --out docs/rows/results.jsonl --doc docs/results.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
