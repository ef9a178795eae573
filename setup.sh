#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with the pinned requirements and convhub installed editable.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -e .
