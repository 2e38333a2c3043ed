"""A failed or interrupted reward download leaves no .cache/huggingface folder, .lock, .incomplete or .part file
under the reward folder, and a later run starts clean (simulated downloads, no network)."""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path

import huggingface_hub
import pytest

from fk_core.rewards import catalog
from fk_core.rewards.weights import MissingWeightsError


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name in (".cache", "huggingface") or p.suffix in (".lock", ".incomplete", ".part"))


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def _failing_hub(calls: list, error: BaseException):
    """A stand-in for hf_hub_download that writes what the real one writes before the network breaks."""

    def fake(repo_id, filename, local_dir, **_kw):
        calls.append(sorted(str(p) for p in Path(local_dir).rglob("*")))
        work = Path(local_dir) / ".cache" / "huggingface" / "download"
        work.mkdir(parents=True, exist_ok=True)
        (work / f"{filename}.lock").write_text("")
        (work / f"{filename}.incomplete").write_bytes(b"\0" * 100)
        (work / f"{filename}.metadata").write_text("etag")
        raise error

    return fake


def test_failed_hub_download_cleans_up(tmp_path, online, monkeypatch):
    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _failing_hub(calls, OSError("connection reset")))
    with pytest.raises(MissingWeightsError, match="connection reset"):
        catalog.build_reward("HPSv2.1", [tmp_path])
    assert calls, "the simulated download ran"
    assert _leftovers(tmp_path) == []


def test_interrupted_download_cleans_up_and_the_next_run_starts_clean(tmp_path, online, monkeypatch):
    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _failing_hub(calls, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        catalog.build_reward("HPSv2.1", [tmp_path])
    assert _leftovers(tmp_path) == []
    # A process killed mid-download cleans nothing: the next run must not start from its leftovers.
    stale = tmp_path / "HPSv2" / ".cache" / "huggingface" / "download"
    stale.mkdir(parents=True)
    (stale / "HPS_v2.1_compressed.pt.lock").write_text("")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _failing_hub(calls, OSError("offline")))
    with pytest.raises(MissingWeightsError):
        catalog.build_reward("HPSv2.1", [tmp_path])
    assert calls[-1] == [], f"the second download started in a folder with leftovers: {calls[-1]}"
    assert _leftovers(tmp_path) == []


class _BrokenResponse(io.BytesIO):
    headers = {"Content-Length": str(8 << 20)}

    def read(self, size=-1):
        if self.tell() >= 1 << 20:
            raise ConnectionResetError("the server went away")
        return super().read(size)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_broken_url_download_removes_its_part_file(tmp_path, online, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=60: _BrokenResponse(b"x" * (8 << 20)))
    with pytest.raises(MissingWeightsError, match="the server went away"):
        catalog.build_reward("LAION aesthetic", [tmp_path])
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth").exists()


def test_finished_files_are_kept(tmp_path):
    folder = tmp_path / "HPSv2"
    folder.mkdir()
    (folder / "HPS_v2.1_compressed.pt").write_bytes(b"weights")
    (folder / "half.part").write_bytes(b"half")
    catalog.clean_partial_download(folder)
    assert [p.name for p in folder.iterdir()] == ["HPS_v2.1_compressed.pt"]
