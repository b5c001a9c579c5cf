#!/usr/bin/env bash
# Creates .venv-tests with the published Python SDK the compatibility tests run (agenttier==0.8.1).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-tests/bin/python ]; then
  python3 -m venv .venv-tests
fi
if ! .venv-tests/bin/python -c 'import agenttier, sys; sys.exit(agenttier.__version__ != "0.8.1")' 2>/dev/null; then
  .venv-tests/bin/pip install --quiet --disable-pip-version-check 'agenttier==0.8.1'
fi
# Jupyter's terminal server, the peer the terminal benchmark (bench_terminal) measures against.
if ! .venv-tests/bin/python -c 'import terminado' 2>/dev/null; then
  .venv-tests/bin/pip install --quiet --disable-pip-version-check 'terminado==0.18.1'
fi
# Offline validation of the rendered Helm chart against the Kubernetes JSON schemas (kube_chart).
if ! .venv-tests/bin/python -c 'import kubernetes_validate' 2>/dev/null; then
  .venv-tests/bin/pip install --quiet --disable-pip-version-check 'kubernetes-validate==1.34.1'
fi
.venv-tests/bin/python -c 'import agenttier; print("python SDK", agenttier.__version__)'
