#!/usr/bin/env bash
# Create (or update) the Python environment used by the tests, the demo and the benchmarks.
# Location: $FK_VENV, default ~/.venvs/fk-steering. Safe to run repeatedly: pip skips what is installed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FK_VENV:-$HOME/.venvs/fk-steering}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
# torch and torchvision pinned to the builds this machine keeps on local disk: an unpinned torch would pull
# a multi-GB download. ComfyUI and open_clip need torchvision, so the lighter CPU-only 2.13 wheel won't do.
"${pip[@]}" torch==2.14.1 torchvision==0.29.1
"${pip[@]}" -r "$here/requirements.txt" -r "$here/requirements-dev.txt"
# A ComfyUI host, when there is one, is tested in-process: its own Python requirements go into this venv.
host="$("$venv/bin/python" "$here/tests/find_comfyui.py" 2>/dev/null || true)"
if [ -n "$host" ] && [ -f "$host/requirements.txt" ]; then
    echo "[setup] ComfyUI host at $host: installing its requirements (torch lines excluded)"
    grep -v -E '^(torch|torchvision|torchaudio)\b' "$host/requirements.txt" > "$venv/comfyui-requirements.txt"
    "${pip[@]}" -r "$venv/comfyui-requirements.txt" requests
else
    echo "[setup] no ComfyUI host found: host tests will be skipped (see README, 'Running the tests')"
fi
echo "$venv"
