"""Copy every version of every example workflow in git history into tests/fixtures/saved_workflows/.

Each distinct file content is kept once, named ``<first commit>_<file name>``; ``manifest.json`` says, per FK node
in it, which layout of web/fk_widget_layouts.json its widgets_values follow (the layout whose widget count the
save has among those the node had up to that commit). Run from the repository root after a release:
``python scripts/collect_saved_workflows.py``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "saved_workflows"
RELEASES = {"0.1.0": "da898cb"}  # release -> its commit: a fixture equal to a release's file says so
TABLE = json.loads((ROOT / "web" / "fk_widget_layouts.json").read_text())


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


def is_ancestor(old: str, new: str) -> bool:
    return subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", old, new]).returncode == 0


def layout_index(node_type: str, values: list, commit: str) -> int:
    """The layout a save made at ``commit`` follows: among the layouts that existed then, the one whose length
    matches (the newest such)."""
    layouts = TABLE[node_type]["layouts"]
    existing = [i for i, layout in enumerate(layouts)
                if layout["since_commit"] != "workflows branch" and is_ancestor(layout["since_commit"], commit)]
    matching = [i for i in existing if len(layouts[i]["widgets"]) == len(values)]
    if not matching:
        raise ValueError(f"{commit}: {node_type} with {len(values)} values matches no layout of its time")
    return matching[-1]


def main() -> None:
    manifest, seen = [], set()
    for commit in reversed(git("log", "--format=%h", "--", "workflows/").split()):
        for path in git("ls-tree", "--name-only", commit, "workflows/").split():
            if not path.endswith(".json"):
                continue
            blob = git("rev-parse", f"{commit}:{path}").strip()
            if blob in seen:
                continue
            seen.add(blob)
            workflow = json.loads(git("show", f"{commit}:{path}"))
            layouts = {}
            for node in workflow["nodes"]:
                if node["type"] in TABLE:
                    layouts[str(node["id"])] = layout_index(node["type"], node.get("widgets_values") or [], commit)
            name = f"{commit}_{Path(path).name}"
            (OUT / name).write_text(json.dumps(workflow, separators=(",", ":"), ensure_ascii=False) + "\n")
            released = [version for version, at in RELEASES.items()
                        if subprocess.run(["git", "-C", str(ROOT), "rev-parse", f"{at}:{path}"],
                                          capture_output=True, text=True).stdout.strip() == blob]
            manifest.append({"file": name, "commit": commit, "path": path, "layouts": layouts,
                             "in_releases": released})
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(manifest)} saved workflows in {OUT}")


if __name__ == "__main__":
    main()
