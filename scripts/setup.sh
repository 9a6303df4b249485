#!/usr/bin/env bash
# Creates .venv with fpl-hf and its test dependencies. CPU machines pin torch through constraints-cpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -c constraints-cpu.txt -e ".[test]"
