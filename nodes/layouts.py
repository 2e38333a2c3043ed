"""Every saved widget layout of every FK node (``web/fk_widget_layouts.json``), read once.

The front end stores a node's widget values as a positional list, so a widget inserted before others
scrambles older saves. The table lists each node's layouts, oldest first (the last is the live schema's, which
``tests/test_widget_layouts.py`` enforces); ``web/fk_migrate.js`` maps a save of an earlier layout by name.
``absent_means`` is the value that does what a version without that input did: ``execute`` uses it when an
API prompt leaves the (optional) input out, and the migration sets it on an old save.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

TABLE_PATH = Path(__file__).resolve().parent.parent / "web" / "fk_widget_layouts.json"


@functools.lru_cache(maxsize=1)
def layout_table() -> dict:
    table = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    return {node: entry for node, entry in table.items() if not node.startswith("_")}


def absent_means(node_id: str) -> dict:
    """{input: value a prompt without that input means} for one node (inputs added after the first release)."""
    return dict(layout_table()[node_id]["absent_means"])
