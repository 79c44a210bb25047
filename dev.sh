#!/usr/bin/env bash
# One entry point for a fresh machine: creates (or reuses) a cached virtual environment outside
# the checkout, installs the pack's dependencies into it, then runs the requested job.
#   ./dev.sh demo [--out DIR]   the main job: InsetGAN demo on the shipped demo models
#   ./dev.sh test [pytest args] the test suite
#   ./dev.sh python ARGS...      any Python command inside the environment
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
stamp="$(cat requirements.txt requirements-test.txt | sha256sum | cut -c1-12)"
venv="${INSETGAN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/comfyui-insetgan/venv-$stamp}"
if [ ! -f "$venv/.complete" ]; then
  echo "dev.sh: creating the environment in $venv (first run only; a few minutes)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # torch first, so that the runtime requirements resolve against the pinned build.
  "$venv/bin/python" -m pip install -q -r requirements-test.txt
  "$venv/bin/python" -m pip install -q -r requirements.txt
  touch "$venv/.complete"
fi
py="$venv/bin/python"
job="${1:-test}"; shift || true
case "$job" in
  test) exec "$py" -m pytest -q "$@" ;;
  demo) exec "$py" -m insetgan_ops demo "$@" ;;
  python) exec "$py" "$@" ;;
  *) echo "usage: ./dev.sh {test|demo|python} [args...]" >&2; exit 2 ;;
esac
