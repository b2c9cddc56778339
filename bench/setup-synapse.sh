#!/usr/bin/env bash
# Creates .venv-synapse with matrix-synapse, the reference the benchmarks compare against.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-synapse/bin/python ] || python3 -m venv .venv-synapse
.venv-synapse/bin/pip install -q matrix-synapse
echo "SYNAPSE_PYTHON=$(pwd)/.venv-synapse/bin/python"
