"""Test harness for running this pack inside a real ComfyUI host.

Reusable by every test module (and by other helpers' tests):

* ``locate_comfyui()``: where the host lives (COMFYUI_PATH, else the pack's grandparent when the pack sits in
  ``ComfyUI/custom_nodes``, else ``~/comfy/ComfyUI``), or ``None`` with the reason.
* ``import_host()``: in-process import of ComfyUI on CPU (``args.cpu = True`` before ``comfy`` is imported).
* ``load_pack_in_process()``: loads this pack through ComfyUI's own ``nodes.load_custom_node``.
* tiny model builders made from ComfyUI's own classes (SD1.5 family, EPS / V_PREDICTION / FLOW), a TAESD-shaped
  VAE, conditioning, and ``write_thin_sd15_checkpoint`` (a file CheckpointLoaderSimple detects as SD1.5).
* ``install_oracle()``: an analytic two-mode posterior-mean denoiser hooked in with
  ``set_model_unet_function_wrapper``; counts model evaluations (calls and batch rows).
* ``ComfyServer``: ``main.py --cpu`` in a throw-away base directory with this pack symlinked into its
  ``custom_nodes``; submit API graphs over HTTP, wait on the websocket, read ``/history``.

Nothing here modifies the host's tree: every run writes into a temp dir.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
PACK_MODULE_NAME = "fk_steering"
TEST_NODES_DIR = Path(__file__).resolve().parent / "host_nodes" / "fk_test_nodes"  # FK_REWARD without weights
HOST_MISSING_REASON = (
    "ComfyUI host not found: set COMFYUI_PATH, put this pack in ComfyUI/custom_nodes, or install ~/comfy/ComfyUI"
)


# --------------------------------------------------------------------------------------------------- locating


def _looks_like_comfyui(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy").is_dir() and (path / "nodes.py").is_file()


def locate_comfyui() -> tuple[Path | None, str]:
    """Return ``(path, how)`` for the ComfyUI host, or ``(None, reason)`` when there is none."""
    env = os.environ.get("COMFYUI_PATH")
    if env:
        path = Path(env).expanduser().resolve()
        if _looks_like_comfyui(path):
            return path, "COMFYUI_PATH"
        return None, f"COMFYUI_PATH={env} is not a ComfyUI checkout (no main.py / comfy/ / nodes.py)"
    # The pack's own (unresolved) location: a symlink in custom_nodes counts.
    pack_here = Path(__file__).absolute().parents[1]
    if pack_here.parent.name == "custom_nodes" and _looks_like_comfyui(pack_here.parent.parent):
        return pack_here.parent.parent, "pack installed in ComfyUI/custom_nodes"
    default = Path("~/comfy/ComfyUI").expanduser()
    if _looks_like_comfyui(default):
        return default, "~/comfy/ComfyUI"
    return None, HOST_MISSING_REASON


def all_hosts() -> list[Path]:
    """Every ComfyUI host the test matrix runs against, primary first.

    ``COMFYUI_PATHS`` (os.pathsep-separated) replaces the lookup when set. Otherwise: the host
    :func:`locate_comfyui` finds, then every ``~/comfy/ComfyUI-*`` checkout (e.g. ``ComfyUI-0.33``), so a
    second version installed next to comfy-cli's default workspace is tested without any configuration.
    """
    listed = os.environ.get("COMFYUI_PATHS")
    if listed:
        candidates = [Path(p).expanduser() for p in listed.split(os.pathsep) if p.strip()]
    else:
        primary, _how = locate_comfyui()
        candidates = ([primary] if primary else []) + sorted(Path("~/comfy").expanduser().glob("ComfyUI-*"))
    hosts: list[Path] = []
    for path in candidates:
        path = path.resolve()
        if _looks_like_comfyui(path) and path not in hosts:
            hosts.append(path)
    return hosts


def host_version(comfy_dir: Path) -> str:
    """The host's ``__version__`` from comfyui_version.py, read without importing it ("unknown" if absent)."""
    version_file = Path(comfy_dir) / "comfyui_version.py"
    if version_file.is_file():
        for line in version_file.read_text().splitlines():
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


# --------------------------------------------------------------------------------------------------- in-process


_HOST_STATE: dict = {}
HOST_TOP_LEVEL = ("comfy", "nodes", "utils", "server", "folder_paths", "latent_preview")


def _forget_shadowing_modules(comfy_dir: Path) -> None:
    """Drop already-imported modules that carry a host module's name but are not the host's.

    pytest imports the pack's root ``__init__.py`` (it is a package) under the checkout folder's name; a
    checkout called ``comfy`` would then hide ComfyUI's ``comfy`` package, and the pack's ``nodes/`` can hide
    ComfyUI's ``nodes.py``. pytest keeps its own reference, so forgetting the name here is harmless.
    """
    root = str(Path(comfy_dir).resolve())
    # ComfyUI's ``comfy`` is a namespace package (no __init__.py), so any regular package called ``comfy`` on
    # sys.path wins over it whatever the order: drop such path entries (pytest adds the checkout's parent).
    sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "comfy" / "__init__.py").is_file()]
    for name in list(sys.modules):
        top = name.split(".", 1)[0]
        if top not in HOST_TOP_LEVEL:
            continue
        origin = getattr(sys.modules[name], "__file__", None) or ""
        if origin and not str(Path(origin).resolve()).startswith(root):
            del sys.modules[name]


def import_host(comfy_dir: Path, scratch_dir: Path | None = None, cpu: bool = True):
    """Import ComfyUI in this process on CPU (``cpu=False``: on the GPU when there is one, for scripts such as
    bench/taesd_agreement.py); returns the ``nodes`` module. Idempotent.

    ``args.cpu`` must be set before ``comfy.model_management`` is imported: without it a CPU-only torch would
    ask CUDA for the current device. ``utils`` (ComfyUI's top-level package) is imported first because some
    host module later puts ``ComfyUI/comfy`` on sys.path, after which ``utils`` would resolve to comfy/utils.py.
    """
    if "nodes" in _HOST_STATE:
        return _HOST_STATE["nodes"]
    comfy_dir = Path(comfy_dir)
    _forget_shadowing_modules(comfy_dir)
    if str(comfy_dir) not in sys.path:
        sys.path.insert(0, str(comfy_dir))
    from comfy.cli_args import args

    args.cpu = cpu
    importlib.import_module("utils.install_util")  # before anything else from the host (see docstring)
    import folder_paths

    import nodes

    scratch = Path(scratch_dir or tempfile.mkdtemp(prefix="fk-comfy-host-"))
    for sub in ("temp", "output", "input"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    folder_paths.set_temp_directory(str(scratch / "temp"))
    folder_paths.set_output_directory(str(scratch / "output"))
    folder_paths.set_input_directory(str(scratch / "input"))
    _HOST_STATE["nodes"] = nodes
    _HOST_STATE["scratch"] = scratch
    return nodes


def load_pack_in_process(pack_dir: Path = PACK_DIR, name: str = PACK_MODULE_NAME):
    """Load this pack with ComfyUI's own loader (as the server would) and return the pack module.

    The pack is symlinked as ``<scratch>/custom_nodes/<name>`` so its module name does not depend on the
    checkout folder's name (a worktree called ``comfy`` would otherwise shadow nothing but confuse logs).
    """
    key = ("pack", str(pack_dir), name)
    if key in _HOST_STATE:
        return _HOST_STATE[key]
    nodes = _HOST_STATE.get("nodes")
    if nodes is None:
        raise RuntimeError("import_host() must run before load_pack_in_process()")
    link_root = Path(_HOST_STATE["scratch"]) / "custom_nodes"
    link_root.mkdir(exist_ok=True)
    link = link_root / name
    if not link.exists():
        link.symlink_to(Path(pack_dir).resolve(), target_is_directory=True)
    ok = asyncio.run(nodes.load_custom_node(str(link), module_parent="custom_nodes"))
    if not ok:
        raise RuntimeError(f"ComfyUI failed to load the pack from {link}; see the log above")
    module = sys.modules[str(link).replace(".", "_x_")]
    _HOST_STATE[key] = module
    return module


def host_sampler_names(comfy_dir: Path) -> list[str]:
    """The host's built-in ``comfy.samplers.SAMPLER_NAMES``, read from its source without importing it (test
    parametrisation happens at collection, before any fixture imports the host)."""
    import ast

    tree = ast.parse((Path(comfy_dir) / "comfy" / "samplers.py").read_text(encoding="utf-8"))
    lists: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name == "KSAMPLER_NAMES":
                lists[name] = ast.literal_eval(node.value)
            elif name == "SAMPLER_NAMES" and isinstance(node.value, ast.BinOp):
                lists[name] = lists["KSAMPLER_NAMES"] + ast.literal_eval(node.value.right)
    if "SAMPLER_NAMES" not in lists:
        raise RuntimeError(f"could not read SAMPLER_NAMES from {comfy_dir}/comfy/samplers.py; update "
                           "tests/comfy_host.host_sampler_names for this host")
    return lists["SAMPLER_NAMES"]


# --------------------------------------------------------------------------------------------------- tiny models

MODEL_TYPES = ("eps", "v", "flow")
TINY_CONTEXT_DIM = 64


def tiny_unet_config(context_dim: int = TINY_CONTEXT_DIM) -> dict:
    """An SD1.5-family UNet config small enough for CPU tests (~1 M parameters)."""
    return {
        "model_channels": 32,
        "in_channels": 4,
        "out_channels": 4,
        "channel_mult": [1, 2],
        "num_res_blocks": [1, 1],
        "transformer_depth": [1, 1],
        "transformer_depth_output": [1, 1, 1, 1],
        "transformer_depth_middle": 1,
        "context_dim": context_dim,
        "num_heads": 4,
        "num_head_channels": -1,
        "image_size": 32,
        "use_spatial_transformer": True,
        "use_linear_in_transformer": False,
        "legacy": False,
        "adm_in_channels": None,
        "use_temporal_attention": False,
        "use_temporal_resblock": False,
        "use_checkpoint": False,
    }


def init_weights_(module, seed: int) -> None:
    """comfy.ops layers are created with torch.empty: give every parameter a defined value."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "bias":
                param.zero_()
            elif param.ndim == 1 or "norm" in name:
                param.fill_(1.0)
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)


def build_tiny_model(model_type: str = "eps", seed: int = 0, inpaint: bool = False):
    """A ModelPatcher around a tiny SD1.5-family BaseModel of the given type ("eps" | "v" | "flow").

    ``inpaint``: an inpainting model like SD1.5-inpainting (9 input channels: latent, mask, masked image as
    concat conditioning ``c_concat``)."""
    import comfy.model_base
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    unet_config = tiny_unet_config()
    if inpaint:
        unet_config["in_channels"] = 9
    config = comfy.supported_models.SD15(unet_config)
    if model_type == "flow":
        config.sampling_settings = {"shift": 3.0, "multiplier": 1.0}
    config.set_inference_dtype(torch.float32, None)
    kind = {
        "eps": comfy.model_base.ModelType.EPS,
        "v": comfy.model_base.ModelType.V_PREDICTION,
        "flow": comfy.model_base.ModelType.FLOW,
    }[model_type]
    model = comfy.model_base.BaseModel(config, model_type=kind, device=torch.device("cpu"))
    if inpaint:
        model.set_inpaint()
    init_weights_(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(
        model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device()
    )


def taesd_state_dict(seed: int = 0) -> dict:
    """A TAESD-shaped (encoder + decoder) state dict; comfy.sd.VAE recognises it by its key names."""
    import comfy.taesd.taesd

    net = comfy.taesd.taesd.TAESD()
    init_weights_(net, seed)
    # Random conv weights at 0.02 shrink the signal layer after layer; a larger scale keeps decoded images
    # varied (tests need images that depend on the latent).
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in net.parameters():
            if param.ndim == 4:
                fan_in = param.shape[1] * param.shape[2] * param.shape[3]
                param.copy_(torch.randn(param.shape, generator=gen) * math.sqrt(2.0 / fan_in))
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def build_tiny_vae(seed: int = 0):
    import comfy.sd

    return comfy.sd.VAE(sd=taesd_state_dict(seed))


def tiny_conditioning(batch: int = 1, seed: int = 0, context_dim: int = TINY_CONTEXT_DIM, tokens: int = 77):
    """CONDITIONING as CLIPTextEncode would return it (SD1.5 needs only the cross-attention tensor)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(batch, tokens, context_dim, generator=gen), {}]]


def empty_latent(batch: int = 1, size: int = 8) -> dict:
    import torch

    return {"samples": torch.zeros(batch, 4, size, size)}


# --------------------------------------------------------------------------------------------------- oracle


@dataclass
class CallCounter:
    """Model evaluations seen by a unet function wrapper: ``calls`` batched calls, ``rows`` samples."""

    calls: int = 0
    rows: int = 0
    batch_sizes: list = field(default_factory=list)

    def record(self, batch: int) -> None:
        self.calls += 1
        self.rows += batch
        self.batch_sizes.append(batch)

    def reset(self) -> None:
        self.calls = 0
        self.rows = 0
        self.batch_sizes.clear()


def oracle_denoise(x, sigma, flow: bool, modes=(1.0, -1.0), data_std: float = 0.3):
    """Posterior mean E[x0 | x_t] for data = m + data_std * N(0, I) per image, m uniform over ``modes``.

    k-diffusion space: x_t = a x0 + sigma n with a = 1 (EPS / V-prediction) or a = 1 - sigma (FLOW / CONST).
    Per mode: x_t | m ~ N(a m, v I), v = a^2 s^2 + sigma^2, and E[x0 | x_t, m] = m + a s^2 / v (x_t - a m).
    Mode posteriors are computed with logsumexp so large latents cannot overflow.
    """
    import torch

    x = x.float()
    dims = tuple(range(1, x.ndim))
    sig = sigma.float().reshape(-1, *([1] * (x.ndim - 1)))
    a = (1.0 - sig) if flow else torch.ones_like(sig)
    var = a * a * data_std**2 + sig * sig
    logps, means = [], []
    for m in modes:
        resid = x - a * m
        logps.append(-(resid * resid / (2 * var)).sum(dim=dims))
        means.append(m + a * data_std**2 / var * resid)
    post = torch.softmax(torch.stack(logps, dim=0), dim=0)  # [modes, B]
    out = sum(p.reshape(-1, *([1] * (x.ndim - 1))) * mu for p, mu in zip(post, means))
    return out


def install_oracle(patcher, counter: CallCounter | None = None, flow: bool | None = None, call_model: bool = False):
    """Clone ``patcher`` and make its denoiser the analytic oracle (all ComfyUI sampling machinery still runs).

    The wrapper receives k-diffusion ``input`` and ``timestep`` = sigma and must return the x0-prediction.
    With ``call_model`` the real UNet also runs (result discarded) so timings stay realistic.
    """
    import comfy.model_sampling

    clone = patcher.clone()
    if flow is None:
        flow = isinstance(clone.get_model_object("model_sampling"), comfy.model_sampling.CONST)
    counter = counter if counter is not None else CallCounter()

    def wrapper(apply_model, args):
        x, sigma = args["input"], args["timestep"]
        counter.record(x.shape[0])
        if call_model:
            apply_model(x, sigma, **args["c"])
        return oracle_denoise(x, sigma, flow=flow).to(x.dtype)

    clone.set_model_unet_function_wrapper(wrapper)
    clone.fk_test_counter = counter
    return clone, counter


def counting_model(patcher, counter: CallCounter | None = None):
    """Clone ``patcher`` so every real UNet evaluation is counted (calls and batch rows)."""
    clone = patcher.clone()
    counter = counter if counter is not None else CallCounter()

    def wrapper(apply_model, args):
        counter.record(args["input"].shape[0])
        return apply_model(args["input"], args["timestep"], **args["c"])

    clone.set_model_unet_function_wrapper(wrapper)
    return clone, counter


def mode_reference_images(vae, size: int = 8, modes=(1.0, -1.0)):
    """Decode constant latents at each oracle mode (internal latent space -> external via SD1.5 scaling)."""
    import comfy.latent_formats
    import torch

    fmt = comfy.latent_formats.SD15()
    refs = []
    for m in modes:
        internal = torch.full((1, 4, size, size), float(m))
        refs.append(vae.decode(fmt.process_out(internal)))
    return refs


class ModeReward:
    """FK_REWARD for oracle tests: images closer to the decoded ``+1`` mode score higher.

    It scores the decoded images through the real (random-weight) TAESD decoder, so the whole adapter path
    x0 -> process_latent_out -> VAE.decode -> reward is exercised. Reward = -MSE to the +mode reference plus
    MSE to the -mode reference (positive for +mode-like images, negative for -mode-like ones).
    """

    name = "oracle_mode"

    def __init__(self, vae, size: int = 8):
        self.plus, self.minus = mode_reference_images(vae, size)
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        imgs = images.float()
        d_plus = ((imgs - self.plus.to(imgs)) ** 2).mean(dim=(1, 2, 3))
        d_minus = ((imgs - self.minus.to(imgs)) ** 2).mean(dim=(1, 2, 3))
        return (d_minus - d_plus) / (d_minus + d_plus + 1e-12)


def positive_mode_share(latents) -> float:
    """Fraction of final latents (any space: scaling keeps the sign) in the +1 mode."""
    return float((latents.float().mean(dim=tuple(range(1, latents.ndim))) > 0).float().mean())


# --------------------------------------------------------------------------------------------------- checkpoint


def thin_sd15_unet():
    """UNet that ComfyUI's detector classifies as SD1.5: full width 320 / context 768, but a single level."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    return UNetModel(
        image_size=32,
        in_channels=4,
        out_channels=4,
        model_channels=320,
        num_res_blocks=[1],
        channel_mult=[1],
        transformer_depth=[1],
        transformer_depth_output=[1, 1],
        transformer_depth_middle=1,
        context_dim=768,
        num_heads=8,
        num_head_channels=-1,
        use_spatial_transformer=True,
        use_linear_in_transformer=False,
        legacy=False,
        operations=comfy.ops.disable_weight_init,
    )


def write_thin_sd15_checkpoint(path: Path, with_clip: bool = True, seed: int = 0) -> Path:
    """Write a safetensors checkpoint that CheckpointLoaderSimple loads as SD1.5 (UNet + TAESD VAE + CLIP-L).

    CLIP-L keeps its fixed full size (SD1.5's text encoder config is hard-coded) so CLIPTextEncode works.
    """
    import safetensors.torch
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {}
    unet = thin_sd15_unet()
    init_weights_(unet, seed)
    for k, v in unet.state_dict().items():
        sd["model.diffusion_model." + k] = v.half()
    for k, v in taesd_state_dict(seed).items():
        sd["first_stage_model." + k] = v.half()
    if with_clip:
        import comfy.sd1_clip

        clip = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32)
        init_weights_(clip, seed + 2)
        for k, v in clip.state_dict().items():
            if k.endswith("position_ids"):
                sd["cond_stage_model." + k] = v
            else:
                sd["cond_stage_model." + k] = v.half()
        del clip
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


# --------------------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A real ComfyUI server process on CPU, with this pack loaded, in a throw-away base directory.

    ``--base-directory`` redirects models / custom_nodes / input / output / temp / user, so the host's tree is
    never touched; the pack is symlinked into ``<base>/custom_nodes/<pack_name>``.
    """

    def __init__(self, comfy_dir: Path, base_dir: Path, pack_dir: Path = PACK_DIR,
                 pack_name: str = PACK_MODULE_NAME, python: str = sys.executable, extra_args=(),
                 extra_packs=(TEST_NODES_DIR,), extra_env: dict | None = None):
        self.comfy_dir = Path(comfy_dir)
        self.extra_env = dict(extra_env or {})  # the server's environment only (None: the variable removed)
        self.base = Path(base_dir)
        self.pack_dir = Path(pack_dir)
        self.pack_name = pack_name
        self.python = python
        self.extra_args = list(extra_args)
        self.extra_packs = [Path(p) for p in extra_packs]
        self.port = None
        self.proc = None
        self.client_id = str(uuid.uuid4())
        self.log_path = self.base / "server.log"

    # -- layout
    @property
    def checkpoints_dir(self) -> Path:
        return self.base / "models" / "checkpoints"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        for sub in ("custom_nodes", "models/checkpoints", "input", "output", "temp", "user"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        links = {self.pack_name: self.pack_dir, **{p.name: p for p in self.extra_packs}}
        for name, target in links.items():
            link = self.base / "custom_nodes" / name
            if not link.exists():
                link.symlink_to(Path(target).resolve(), target_is_directory=True)

    # -- life cycle
    def start(self, timeout: float = 120.0) -> None:
        self.prepare()
        self.port = free_port()
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch", "--base-directory", str(self.base),
               "--database-url", "sqlite:///:memory:", *self.extra_args]
        self._log = open(self.log_path, "w")  # noqa: SIM115 (kept open for the server's lifetime)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for key, value in self.extra_env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        self.proc = subprocess.Popen(cmd, cwd=self.comfy_dir, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} during startup:\n{self.log_tail()}")
            try:
                self.get_json("/system_stats", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    # -- HTTP
    def get_json(self, route: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + route, timeout=timeout) as resp:
            return json.loads(resp.read())

    def get_bytes(self, route: str, timeout: float = 30) -> bytes:
        with urllib.request.urlopen(self.url + route, timeout=timeout) as resp:
            return resp.read()

    def post_json(self, route: str, payload, timeout: float = 30):
        req = urllib.request.Request(self.url + route, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def object_info(self, node_type: str | None = None) -> dict:
        return self.get_json("/object_info" + (f"/{node_type}" if node_type else ""))

    def view_image(self, image: dict) -> bytes:
        from urllib.parse import urlencode

        query = urlencode({"filename": image["filename"], "subfolder": image.get("subfolder", ""),
                           "type": image.get("type", "output")})
        return self.get_bytes("/view?" + query)

    # -- prompts
    def run_prompt(self, graph: dict, timeout: float = 300.0) -> PromptResult:
        """Submit an API-format graph, follow it on the websocket until it finishes, return its history."""
        import websocket  # websocket-client

        ws = websocket.create_connection(f"ws://127.0.0.1:{self.port}/ws?clientId={self.client_id}", timeout=timeout)
        try:
            status, body = self.post_json("/prompt", {"prompt": graph, "client_id": self.client_id})
            if status != 200:
                return PromptResult(prompt_id=None, status="rejected", error=body, messages=[], history=None)
            prompt_id = body["prompt_id"]
            messages, outcome, error = [], None, None
            deadline = time.monotonic() + timeout
            while outcome is None:
                ws.settimeout(max(0.1, deadline - time.monotonic()))
                raw = ws.recv()
                if isinstance(raw, bytes):  # binary frames: previews, and text shown under a node
                    messages.append(_binary_message(raw))
                    continue
                msg = json.loads(raw)
                messages.append(msg)
                data = msg.get("data", {})
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                kind = msg.get("type")
                if kind == "execution_success":
                    outcome = "success"
                elif kind == "execution_error":
                    outcome, error = "error", data
                elif kind == "execution_interrupted":
                    outcome = "interrupted"
                if time.monotonic() > deadline:
                    raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s")
        finally:
            ws.close()
        history = None
        for _ in range(100):  # the history entry can land a few ms after execution_success
            entry = self.get_json(f"/history/{prompt_id}")
            if prompt_id in entry:
                history = entry[prompt_id]
                break
            time.sleep(0.05)
        return PromptResult(prompt_id=prompt_id, status=outcome, error=error, messages=messages, history=history)


def _binary_message(raw: bytes) -> dict:
    """A binary websocket frame: 4-byte event type; TEXT (3, ComfyUI's progress text under a node) carries a
    4-byte node-id length, the node id and the text. Other frames (previews) are kept as their size."""
    event = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if event == 3 and len(raw) >= 8:
        size = int.from_bytes(raw[4:8], "big")
        return {"type": "progress_text", "node": raw[8:8 + size].decode("utf-8", "replace"),
                "text": raw[8 + size:].decode("utf-8", "replace")}
    return {"type": "binary", "bytes": len(raw)}


@dataclass
class PromptResult:
    prompt_id: str | None
    status: str  # success | error | interrupted | rejected
    error: object
    messages: list
    history: dict | None

    def outputs(self, node_id: str) -> dict:
        if not self.history:
            return {}
        return self.history.get("outputs", {}).get(str(node_id), {})


def make_server_base(root: Path | None = None) -> Path:
    return Path(tempfile.mkdtemp(prefix="fk-comfy-server-", dir=root))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=False)


# --------------------------------------------------------------------------------------------------- video


WAN_TEXT_DIM = 16


def tiny_video_patcher(config, seed: int):
    """A ModelPatcher around the model of a supported-model ``config`` (fp32, CPU, every weight defined by
    :func:`init_weights_`), as ComfyUI's loader would wrap a checkpoint of that family."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import torch

    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, device=torch.device("cpu"))
    init_weights_(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def build_tiny_wan(seed: int = 0):
    """A ModelPatcher around ComfyUI's own WAN21 (Wan 2.1 text-to-video, a flow model: CONST sampling) with a
    tiny WanModel config (dim 32, one block, ~27 k parameters); latents [B, 16, T, H, W], H and W even."""
    import comfy.supported_models

    unet_config = {"image_model": "wan2.1", "model_type": "t2v", "dim": 32, "ffn_dim": 64, "freq_dim": 32,
                   "text_dim": WAN_TEXT_DIM, "num_heads": 2, "num_layers": 1, "in_dim": 16, "out_dim": 16,
                   "patch_size": (1, 2, 2), "text_len": 8, "window_size": (-1, -1), "qk_norm": True,
                   "cross_attn_norm": True, "eps": 1e-6}
    config = comfy.supported_models.WAN21_T2V(unet_config)
    return tiny_video_patcher(config, seed)


HUNYUAN_POOLED_DIM = 8


def build_tiny_hunyuan_video(seed: int = 0):
    """A ModelPatcher around ComfyUI's own HunyuanVideo (flow: CONST sampling) with a tiny config (hidden 32, one
    double and one single block); the host's HunyuanVideoParams fields decide which settings it takes (0.33 has
    more). Latents [B, 16, T, H, W] as for Wan, so the tiny Wan VAE decodes them in tests."""
    import dataclasses

    import comfy.ldm.hunyuan_video.model
    import comfy.supported_models

    settings = dict(in_channels=16, out_channels=16, vec_in_dim=HUNYUAN_POOLED_DIM, context_in_dim=WAN_TEXT_DIM,
                    hidden_size=32, mlp_ratio=2.0, num_heads=2, depth=1, depth_single_blocks=1, axes_dim=[4, 6, 6],
                    theta=256, patch_size=[1, 2, 2], qkv_bias=True, guidance_embed=False, byt5=False,
                    meanflow=False, use_cond_type_embedding=False, vision_in_dim=None, meanflow_sum=False)
    known = {f.name for f in dataclasses.fields(comfy.ldm.hunyuan_video.model.HunyuanVideoParams)}
    unet_config = {"image_model": "hunyuan_video", **{k: v for k, v in settings.items() if k in known}}
    config = comfy.supported_models.HunyuanVideo(unet_config)
    return tiny_video_patcher(config, seed)


def video_conditioning(family: str = "wan", seed: int = 0, tokens: int = 8):
    """CONDITIONING for the tiny video models: text tokens, plus HunyuanVideo's pooled text vector or LTXV's
    attention mask."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    extra = {"pooled_output": torch.randn(1, HUNYUAN_POOLED_DIM, generator=gen)} if family == "hunyuan" else {}
    if family == "ltxv":
        extra = {"attention_mask": torch.ones(1, tokens, dtype=torch.long)}
    return [[torch.randn(1, tokens, WAN_TEXT_DIM, generator=gen), extra]]


def build_wan_vae():
    """comfy.sd.VAE recognising a Wan 2.1 VAE state dict (its real, fixed architecture; random weights): decodes
    [B, 16, T, h, w] latents to [B, 4(T-1)+1, 8h, 8w, 3] frames."""
    import comfy.ldm.wan.vae
    import comfy.sd

    net = comfy.ldm.wan.vae.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                   temperal_downsample=[False, True, True], dropout=0.0)
    init_video_vae_(net)
    return comfy.sd.VAE(sd=net.state_dict())


def init_video_vae_(net, seed: int = 0) -> None:
    """Defined weights (comfy.ops layers start as torch.empty) with He-scaled convolutions, which keep the decoded
    frames varied (as taesd_state_dict does)."""
    import torch

    init_weights_(net, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in net.parameters():
            if param.ndim >= 4:
                param.copy_(torch.randn(param.shape, generator=gen) * math.sqrt(2.0 / param[0].numel()))


LTXV_VAE_CONFIG = {  # a one-block LTXV CausalVideoAutoencoder: 4x spatial (patch 4), 1x temporal
    "_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3, "latent_channels": 128,
    "blocks": [["res_x", 1]], "scaling_factor": 1.0, "norm_layer": "pixel_norm", "patch_size": 4,
    "latent_log_var": "uniform", "use_quant_conv": False, "causal_decoder": False}


def build_tiny_ltxv(seed: int = 0):
    """A ModelPatcher around ComfyUI's own LTXV (flow: CONST) with a tiny LTXVModel (one block, 2 heads of 16);
    latents [B, 128, T, H, W]; conditioning needs an attention_mask (:func:`video_conditioning`)."""
    import comfy.supported_models

    unet_config = {"image_model": "ltxv", "in_channels": 128, "cross_attention_dim": 32, "attention_head_dim": 16,
                   "num_attention_heads": 2, "caption_channels": WAN_TEXT_DIM, "num_layers": 1}
    config = comfy.supported_models.LTXV(unet_config)
    return tiny_video_patcher(config, seed)


def build_ltxv_vae():
    """comfy.sd.VAE of an LTXV video VAE state dict, its small config passed as the file's metadata (the path
    comfy.sd.VAE reads LTXV configs from): [B, 128, T, h, w] -> [B, T, 4h, 4w, 3]."""
    import json

    import comfy.ldm.lightricks.vae.causal_video_autoencoder as ltxv_vae
    import comfy.sd
    import torch

    net = ltxv_vae.VideoVAE(version=0, config=LTXV_VAE_CONFIG)
    init_video_vae_(net)
    # The latent statistics are buffers made with torch.empty (the published file fills them): whatever memory held,
    # NaN now and then. Identity statistics: un_normalize(x) = x.
    with torch.no_grad():
        for name, buffer in net.named_buffers():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("std-of-means", "mean-of-stds", "mean-of-stds_over_std-of-means"):
                buffer.fill_(1.0)
            elif leaf in ("mean-of-means", "channel"):
                buffer.zero_()
    return comfy.sd.VAE(sd=net.state_dict(), metadata={"config": json.dumps({"vae": LTXV_VAE_CONFIG})})


def empty_video_latent(frames: int = 5, size: int = 16, channels: int = 16) -> dict:
    """EmptyHunyuanLatentVideo's / EmptyWanLatentVideo's latent: [1, 16, (frames-1)//4+1, size/8, size/8]
    (``channels`` 128 for an LTXV-shaped one)."""
    import torch

    return {"samples": torch.zeros(1, channels, (frames - 1) // 4 + 1, size // 8, size // 8)}


# --------------------------------------------------------------------------------------------------- video files

WAN_FILE_TEXT_DIM = 4096  # what ComfyUI's detector gives a Wan 2.1 file (it reads no text_dim: WanModel's default)
THIN_WAN_NAME = "fk_thin_wan21_t2v.safetensors"
WAN_VAE_NAME = "fk_random_wan21_vae.safetensors"


def thin_wan_unet_config() -> dict:
    """The WanModel config ComfyUI's detector reads back from a thin Wan 2.1 T2V file: dim 128 (so one head of
    128, as the detector assumes), one block, the fixed freq_dim 256 and text_dim 4096."""
    return {"image_model": "wan2.1", "model_type": "t2v", "dim": 128, "ffn_dim": 256, "freq_dim": 256,
            "text_dim": WAN_FILE_TEXT_DIM, "num_heads": 1, "num_layers": 1, "in_dim": 16, "out_dim": 16,
            "patch_size": (1, 2, 2), "window_size": (-1, -1), "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6}


def write_thin_wan_files(models_dir: Path, seed: int = 0) -> tuple[str, str]:
    """Write a thin Wan 2.1 T2V diffusion model (models/diffusion_models, loaded by UNETLoader through ComfyUI's
    own detection) and a Wan 2.1 VAE of the real architecture (models/vae, loaded by VAELoader), random weights.
    Returns their file names. (Wan's umt5-xxl text encoder has a fixed ~5.7 B-parameter config, so tests give
    the model random text tokens instead: FKTestWanTextConditioning in tests/host_nodes.)"""
    import comfy.ldm.wan.model
    import comfy.ops
    import safetensors.torch

    models_dir = Path(models_dir)
    (models_dir / "diffusion_models").mkdir(parents=True, exist_ok=True)
    (models_dir / "vae").mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in thin_wan_unet_config().items() if k != "image_model"}
    unet = comfy.ldm.wan.model.WanModel(**config, operations=comfy.ops.disable_weight_init)
    init_weights_(unet, seed)
    safetensors.torch.save_file({k: v.half().contiguous() for k, v in unet.state_dict().items()},
                                str(models_dir / "diffusion_models" / THIN_WAN_NAME))
    vae = build_wan_vae()
    safetensors.torch.save_file({k: v.contiguous() for k, v in vae.first_stage_model.state_dict().items()},
                                str(models_dir / "vae" / WAN_VAE_NAME))
    return THIN_WAN_NAME, WAN_VAE_NAME
