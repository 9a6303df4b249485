#!/usr/bin/env bash
# Installs what fpl-hf needs: the Fashion-MNIST files of the embedded data set (Debian package, when absent)
# and .venv with fpl-hf and its test dependencies. CPU machines pin torch through constraints-cpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${FPL_FASHION_MNIST_DIR:-}" ]; then
  if command -v apt-get >/dev/null; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "Fashion-MNIST is missing: install Debian's dataset-fashion-mnist or set FPL_FASHION_MNIST_DIR." >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -c constraints-cpu.txt -e ".[test]"
