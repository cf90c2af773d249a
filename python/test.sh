#!/usr/bin/env bash
# The Python package's tests (issue 17): builds the `slope` package into a
# virtual environment (target/python-venv, made on first use; maturin, numpy
# and pytest come from PyPI) and runs python/tests with pytest.
# README's test command and .ci/run run it after `cargo test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SLOPE_VENV:-$PWD/target/python-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.9,<2" "numpy>=1.21" "pytest>=7"
# A dev build, which shares what `cargo test` compiled (Cargo.toml, [profile.dev]).
VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop --quiet --manifest-path python/Cargo.toml
"$venv/bin/python" -m pytest -q python/tests "$@"
