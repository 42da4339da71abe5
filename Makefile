# The two set-up commands of the README: `make book` and `make test` (each installs what it needs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RL4LM_PROFILE ?= tiny
# the tiny profile never needs the Hugging Face hub: make sure nothing asks it
ifeq ($(RL4LM_PROFILE),tiny)
export HF_HUB_OFFLINE := 1
endif
export PYTHONUNBUFFERED := 1

.PHONY: book test lint bench homework slides tiny clean install

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml code/book/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e . -e code/book
	touch $(STAMP)

tiny: $(STAMP)
	$(BIN)/python -m rl4lm.assets.tiny

## book: install, build the tiny assets, build the site (executing every page), print where it is
book: tiny
	$(BIN)/python -m rl4lm_book.build .

## lint: ruff over the package, the book tooling, scripts and tests (configured in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check code tests

## test: install, lint, then the whole suite: unit tests, every notebook executed once, built-site and browser checks
test: lint
	$(BIN)/python -m pytest

## bench: per-notebook execution time (median of runs), the tiny-asset build time, the course's LM sampler against
## transformers' generate, the course's PPO against stable-baselines3 (a benchmark-only dependency) on CartPole, and the
## course's DPO and GRPO steps against TRL's DPOTrainer and GRPOTrainer at equal model and batch
bench: tiny
	$(BIN)/python -m rl4lm_book.bench
	$(BIN)/python -m rl4lm_book.bench_sampler
	$(BIN)/python -m pip install -q -r requirements-bench.txt
	$(BIN)/python -m rl4lm_book.bench_ppo
	$(BIN)/python -m rl4lm_book.bench_dpo
	$(BIN)/python -m rl4lm_book.bench_grpo

## homework: regenerate the student notebooks from homework/solutions/*.md
homework: $(STAMP)
	$(BIN)/python -m rl4lm_book.assignments generate

## slides: redraw the slides' figures that the course code computes (slides/figures/*.svg, tiny profile); hand-drawn ones stay
slides: tiny
	$(BIN)/python -m rl4lm_book.slide_figures

clean:
	rm -rf _build
