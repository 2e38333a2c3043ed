"""The headless demo runs end to end and writes its pictures (a short run: 2 seeds)."""

import json

from PIL import Image

from testbeds import demo


def test_demo_prints_table_and_writes_pictures(tmp_path, capsys):
    demo.main(["--out", str(tmp_path), "--runs", "2", "--particles", "4"])
    out = capsys.readouterr().out
    assert "| best-of-N |" in out and "| FK |" in out
    for name in ("contact_sheet_fk.png", "contact_sheet_best_of_n.png", "reward_chart.png", "lineage.png"):
        with Image.open(tmp_path / name) as im:
            assert im.width > 64 and im.height > 64
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert trace["num_particles"] == 4 and len(trace["steps"]) > 0


def test_demo_model_has_a_rare_sunset():
    model = demo.demo_model()
    assert float(model.weights[2]) == 0.003
    assert bool(demo.is_sunset(model, model.means[2:3]))
    assert not bool(demo.is_sunset(model, model.means[0:1]))
