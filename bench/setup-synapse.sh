#!/usr/bin/env bash
# Creates .venv-synapse with matrix-synapse (and psycopg2), the reference the benchmarks compare against.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-synapse/bin/python ] || python3 -m venv .venv-synapse
.venv-synapse/bin/pip install -q matrix-synapse
# psycopg2: Synapse's PostgreSQL driver (bench --synapse-backends postgresql)
.venv-synapse/bin/pip install -q psycopg2-binary
echo "SYNAPSE_PYTHON=$(pwd)/.venv-synapse/bin/python"
