# Sourced by the scripts in scripts/: paths and small helpers. Not meant to be run.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SPARSETRAIN_VENV:-$ROOT/.venv}
JOBS=${SPARSETRAIN_JOBS:-$(nproc)}

say() { echo "[sparsetrain] $*" >&2; }
die() { echo "sparsetrain: error: $1" >&2; [ -n "${2:-}" ] && echo "  hint: $2" >&2; exit "${3:-1}"; }
