#!/usr/bin/env bash
# Set up the environments and run the whole test suite: `bash scripts/test.sh [pytest args]`.
#
# The host matrix: the whole suite runs once with the primary ComfyUI host (in the main venv); then the tests that
# need a host (marker `host`, which conftest.py gives every test using a ComfyUI fixture) run again against every
# further host, each in its own venv (scripts/setup-env.sh lists them in fk-hosts.tsv). FK_REQUIRED_HOSTS (default 2
# when CI=true, else 0) makes too few hosts a failure; FK_STRICT_SKIPS=1 (set when CI=true) turns a skipped host or
# browser test into a failure, so CI can never pass by running nothing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$here/scripts/setup-env.sh" | tail -n 1)"
cd "$here"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
if [ "${CI:-}" = "true" ]; then
    export FK_STRICT_SKIPS="${FK_STRICT_SKIPS:-1}"
    required="${FK_REQUIRED_HOSTS:-2}"
else
    required="${FK_REQUIRED_HOSTS:-0}"
fi
mapfile -t rows < "$venv/fk-hosts.tsv"
if [ "${#rows[@]}" -lt "$required" ]; then
    echo "FAILED: $required ComfyUI hosts required, found ${#rows[@]} (${rows[*]:-none})." >&2
    echo "Install them under ~/comfy/ (ComfyUI, ComfyUI-<version>) or list them in COMFYUI_PATHS." >&2
    exit 1
fi
if [ "${#rows[@]}" -eq 0 ]; then
    echo "=================================================================================" >&2
    echo "SKIPPING every host test: no ComfyUI host found (set COMFYUI_PATH or COMFYUI_PATHS," >&2
    echo "put this pack in ComfyUI/custom_nodes, or install ~/comfy/ComfyUI)." >&2
    echo "=================================================================================" >&2
fi

run_pytest() {  # run_pytest LABEL PYTHON [args]: pytest's exit 5 (nothing collected) is a failure too
    local label="$1" py="$2"
    shift 2
    echo "== tests: $label"
    set +e
    "$py" -m pytest "$@"
    local status=$?
    set -e
    if [ "$status" -eq 5 ]; then
        echo "pytest collected no tests ($label): that is a failure" >&2
        status=1
    fi
    return "$status"
}

failed=()
if [ "${#rows[@]}" -eq 0 ]; then
    run_pytest "whole suite, no host" "$venv/bin/python" "$@" || failed+=("whole suite")
fi
for i in "${!rows[@]}"; do
    host="${rows[$i]%%$'\t'*}"
    host_venv="${rows[$i]#*$'\t'}"
    if [ "$i" -eq 0 ]; then
        COMFYUI_PATH="$host" run_pytest "whole suite, host $host" "$host_venv/bin/python" "$@" \
            || failed+=("whole suite on $host")
    else
        COMFYUI_PATH="$host" run_pytest "host tests, host $host" "$host_venv/bin/python" -m "host or browser" "$@" \
            || failed+=("host tests on $host")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all test runs passed (${#rows[@]} ComfyUI host(s))"
