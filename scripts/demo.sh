#!/usr/bin/env bash
# Set up the environment and run the headless FK demo (no model downloads): `bash scripts/demo.sh [args]`.
# Prints FK against best-of-N and writes contact sheets, the reward/ESS chart and the lineage to demo_out/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$here/scripts/setup-env.sh" | tail -n 1)"
cd "$here"
"$venv/bin/python" -m testbeds.demo "$@"
