"""The last bad inputs of issue 17, each through a real ComfyUI server's /prompt.

* seed 18446744073709551615 (ComfyUI's own maximum) runs: it was refused as "must be a whole number" (a float
  comparison of a 64-bit int);
* FK Sampler (the SamplerCustom path) swapping a deterministic sampler for its random sibling says so under the
  node (ComfyUI's progress text), not only in the server console;
* a failed ImageReward or aesthetic download leaves nothing under models/fk_rewards (no ``.cache/huggingface``
  in ``ImageReward/bert-base-uncased/``, no empty ``aesthetic/``); downloads fail fast here because the server's
  proxy and hub endpoint point at a closed port;
* the memory estimate counts a process address-space limit (``prlimit --as``): free RAM above it is not free.
"""

from __future__ import annotations

import shutil
import subprocess

import bad_input_cases as cases
import comfy_host
import pytest

pytestmark = pytest.mark.host

CKPT = "fk_thin_sd15.safetensors"
SEED_MAX = 0xFFFFFFFFFFFFFFFF


@pytest.fixture(scope="module")
def server(comfy_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy-last-bad-inputs")
    dead = f"http://127.0.0.1:{comfy_host.free_port()}"  # nothing listens: every download fails at once
    network = {"HF_ENDPOINT": dead, "HTTPS_PROXY": dead, "https_proxy": dead, "HTTP_PROXY": dead,
               "http_proxy": dead, "NO_PROXY": None, "no_proxy": None, "HF_HUB_OFFLINE": None,
               "TRANSFORMERS_OFFLINE": None}
    srv = comfy_host.ComfyServer(comfy_dir, base, extra_env=network)
    srv.prepare()
    comfy_host.import_host(comfy_dir, tmp_path_factory.mktemp("comfy-host-last-bad-inputs"))
    comfy_host.write_thin_sd15_checkpoint(srv.checkpoints_dir / CKPT)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_seed_at_comfyuis_maximum_runs(server):
    status, body = server.post_json("/prompt", {"prompt": cases.base_graph(CKPT, seed=SEED_MAX)})
    assert status == 200, body  # queued: no "must be a whole number"
    result = server.run_prompt(cases.base_graph(CKPT, seed=SEED_MAX - 1))
    assert result.status == "success", (result.error, server.log_tail())


def test_fk_sampler_says_a_swapped_sampler_under_the_node(server):
    graph = cases._with(cases.sampler_path_graph(CKPT, seed=5), cases.FK_SAMPLER, sampler_name="euler")
    result = server.run_prompt(graph)
    assert result.status == "success", (result.error, server.log_tail())
    texts = [m for m in result.messages if m.get("type") == "progress_text"]
    said = [m["text"] for m in texts if m["node"] == cases.FK_SAMPLER]
    assert said and "'euler' is deterministic" in said[0] and "euler_ancestral" in said[0], texts


def _reward_folder(server):
    return server.base / "models" / "fk_rewards"


@pytest.mark.parametrize("reward, folder", [("ImageReward", "ImageReward"), ("LAION aesthetic", "aesthetic")])
def test_failed_download_leaves_nothing_in_the_reward_folder(server, reward, folder):
    root = _reward_folder(server)
    shutil.rmtree(root / folder, ignore_errors=True)
    result = server.run_prompt(cases._with_loader(CKPT, reward=reward))
    assert result.status == "error", result.status
    assert str(result.error.get("node_id")) == cases.LOADER, result.error
    assert not (root / folder).exists(), sorted(str(p.relative_to(root)) for p in (root / folder).rglob("*"))
    leftovers = [str(p.relative_to(root)) for p in root.rglob("*") if p.name in (".cache", "huggingface")
                 or p.suffix in (".lock", ".incomplete", ".part")]
    assert not leftovers, leftovers


def test_memory_estimate_counts_an_address_space_limit(server):
    """prlimit --as on the running server: 1.5 GiB above what it maps now. A run needing about 2 GiB of previews
    (free RAM on this machine is far more) is refused before any model work, and the free memory it reports is
    the room under the limit."""
    import psutil

    if shutil.which("prlimit") is None:
        pytest.skip("not applicable: no prlimit (util-linux) to set the limit on the server")
    pid = server.proc.pid
    limit = psutil.Process(pid).memory_info().vms + (3 << 29)
    graph = cases._with(cases.base_graph(CKPT, seed=11, particles=64), cases.LATENT, width=1024, height=1024)
    if psutil.virtual_memory().available < 4 << 30:
        pytest.skip("not applicable: under 4 GiB of free RAM, the run would be refused without the limit too")
    subprocess.run(["prlimit", f"--pid={pid}", f"--as={limit}:"], check=True)
    try:
        result = server.run_prompt(graph)
    finally:
        subprocess.run(["prlimit", f"--pid={pid}", "--as=unlimited:"], check=True)
    assert result.status == "error", (result.status, server.log_tail())
    text = result.error.get("exception_message", "")
    assert "FK Particle Sampler: particles" in text and "is free" in text, text
    amount, unit = text.split("but only ")[1].split(" ")[:2]
    assert float(amount) * (1 if unit == "GiB" else 1 / 1024) <= 1.6, text
    assert server.alive()
    after = server.run_prompt(cases.base_graph(CKPT, seed=12))
    assert after.status == "success", (after.error, server.log_tail())
