#!/usr/bin/env bash
# Sets up ./.venv with ganlab and its stack (torch, Ray Tune, MLflow, Optuna, pandas). Safe to re-run:
# what is already installed is kept. Set PYTHON to choose the interpreter (3.11 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${GANLAB_TORCH_VERSION:-2.13.0}"

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
PIP=(pip_quiet install --disable-pip-version-check -q)

# pip's own warnings about this machine's pip configuration (index folders that do not exist) are not set-up
# lines a user can act on for ganlab; everything else pip says (errors included) still shows.
pip_quiet() {
  .venv/bin/python -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# torch first: a bare 'torch' requirement pulls a multi-GB CUDA build even on a machine without a GPU.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[setup] NVIDIA GPU found: installing torch $TORCH_VERSION with CUDA"
    PIP_FIND_LINKS="" "${PIP[@]}" "torch==$TORCH_VERSION" numpy -c requirements/constraints.txt
  else
    echo "[setup] no GPU: installing the CPU build of torch $TORCH_VERSION"
    CPU_INDEX=https://download.pytorch.org/whl/cpu
    if .venv/bin/python -c "import urllib.request as u; u.urlopen('$CPU_INDEX/torch/', timeout=5)" 2>/dev/null; then
      "${PIP[@]}" "torch==$TORCH_VERSION" numpy --extra-index-url "$CPU_INDEX" -c requirements/constraints.txt
    else
      # No route to PyTorch's index (a registry-only network): take the CPU wheel the machine provides.
      "${PIP[@]}" "torch==$TORCH_VERSION" numpy -c requirements/constraints.txt
    fi
    # numpy came with torch: importing torch to ask which build it is prints no "Failed to initialize NumPy"
    if .venv/bin/python -c "import torch, sys; sys.exit(torch.version.cuda is None)" 2>/dev/null; then
      echo "[setup] WARNING: the torch installed is a CUDA build; set GANLAB_TORCH_VERSION or install a CPU wheel by hand." >&2
    fi
  fi
fi

echo "[setup] installing ganlab and pinned dependencies (requirements/constraints.txt)"
"${PIP[@]}" -e ".[dev]" -c requirements/constraints.txt

.venv/bin/python - <<'PY'
import torch, ray, mlflow, optuna, pandas
gpu = "CUDA " + torch.version.cuda if torch.version.cuda else "CPU build"
print(f"[setup] ready: torch {torch.__version__} ({gpu}), ray {ray.__version__}, mlflow {mlflow.__version__}, "
      f"optuna {optuna.__version__}, pandas {pandas.__version__}")
PY
