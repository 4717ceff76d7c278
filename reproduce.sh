#!/usr/bin/env bash
# The one entry point: creates .venv and installs the project when missing, then runs a command.
#   ./reproduce.sh demo | test | list | run | verify | report | describe | plan | compare | bench | gpucheck   (./reproduce.sh --help)
set -euo pipefail
export AL_CALLER_CWD="$PWD"   # relative paths in the command resolve against it
cd "$(dirname "$0")"
venv=.venv
stamp=$venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "setting up $venv (first run only) ..." >&2
  python3 -m venv "$venv"
  if ! "$venv/bin/python" -m pip install -e ".[test]" > "$venv/install.log" 2>&1; then
    tail -n 30 "$venv/install.log" >&2
    echo "error: installing the project into $venv failed (full log: $venv/install.log)" >&2
    exit 2
  fi
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
if [ -z "${AL_DATA_ROOT:-}" ] && [ -d ../shared/datasets ]; then
  export AL_DATA_ROOT
  AL_DATA_ROOT=$(cd ../shared/datasets && pwd)
fi
if [ "${1:-}" = "test" ]; then
  shift
  exec "$venv/bin/python" -m pytest -q "$@"
fi
exec "$venv/bin/python" -m core "$@"
