#!/usr/bin/env bash
# Light path on Python 3.13 (the Lambda runtime): build .venv-313 from functions/predict/requirements.txt
# (+ boto3, which Lambda provides), then run tests/unit/test_runtime_light.py from the dev venv. Its
# py313 test starts a moto S3 server on 127.0.0.1, seeds a champion, and has .venv-313's python import
# functions/predict/app.py by path, serve one estimate and list heavy modules (none allowed).
#
#   bash bench/check_py313.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY313="${PY313:-$(PYENV_VERSION="${PYENV_VERSION:-3.11.7:3.13.0}" command -v python3.13 || true)}"
if [ -z "$PY313" ] || ! PYENV_VERSION="${PYENV_VERSION:-3.11.7:3.13.0}" "$PY313" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
    echo "check_py313: no python3.13 on PATH (set PY313=/path/to/python3.13); nothing checked" >&2
    exit 2
fi
if [ ! -x .venv-313/bin/python ]; then
    PYENV_VERSION="${PYENV_VERSION:-3.11.7:3.13.0}" "$PY313" -m venv .venv-313
fi
.venv-313/bin/python -m pip install -q -r functions/predict/requirements.txt boto3
.venv-313/bin/python -c 'import sys, numpy, onnxruntime; print("python", sys.version.split()[0], "numpy", numpy.__version__, "onnxruntime", onnxruntime.__version__)'
RENTLAKE_PY313="$ROOT/.venv-313/bin/python" .venv/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_runtime_light.py -rs
