// Workflows saved by an earlier version of this pack load with the same meaning.
//
// The front end stores a node's widget values as a positional list (widgets_values). FK Potential Selector
// once gained lambda_mode and strength in the middle of its widgets, so a save of another layout, restored by
// position, put lambda's value into lambda_mode. fk_widget_layouts.json lists every layout each FK node has had
// (oldest first, the last is the live one; tests/test_widget_layouts.py keeps it true). On every node's
// configure this file recognises which layout the saved list follows (its length, and which layout's names
// the values fit best) and sets each widget by name; a widget the old version did not have gets the value
// that does what that version did ("absent_means", e.g. lambda_mode "fixed"). What was changed is said once per
// loaded workflow, in a toast (or a dialog on front ends without toasts). A save that matches no known layout
// is left as the front end restored it and said too, never silently.
// Why not ComfyUI's node-replacement API (io.NodeReplace, ComfyUI 0.33+): it maps a deprecated node *type* to
// another, by old_node_id; these nodes keep their ids, so it cannot tell one layout of a node from another.

import { app } from "../../scripts/app.js";

const TAG = "[fk_steering]";

async function readTable() {
  try {
    const response = await fetch(new URL("./fk_widget_layouts.json", import.meta.url));
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const table = await response.json();
    delete table._about;
    return table;
  } catch (err) {
    console.warn(`${TAG} widget layout table not readable; older FK workflows load without migration:`, err);
    return null;
  }
}

const TABLE = await readTable();

const CONTROL_VALUES = ["fixed", "increment", "decrement", "randomize"];

function widgetNamed(node, name) {
  return (node.widgets || []).find((w) => w.name === name);
}

// Can `value` be the value of this node's widget called `name`? (A name the node no longer has: any value.)
function fits(node, name, value) {
  if (name === "control_after_generate") return CONTROL_VALUES.includes(value);
  const widget = widgetNamed(node, name);
  if (!widget) return true;
  const options = widget.options?.values;
  if (widget.type === "combo" || Array.isArray(options)) {
    const list = typeof options === "function" ? options() : options;
    return Array.isArray(list) ? list.includes(value) : typeof value === "string";
  }
  if (widget.type === "number" || widget.type === "slider" || typeof widget.value === "number") {
    return typeof value === "number" && Number.isFinite(value);
  }
  if (widget.type === "toggle" || typeof widget.value === "boolean") return typeof value === "boolean";
  if (widget.type === "text" || widget.type === "customtext" || typeof widget.value === "string") {
    return typeof value === "string";
  }
  return true;
}

// The layout `saved` follows: among the layouts of its length, the one where the most values fit their
// widgets (the newest on a tie, so a save of the live layout is never touched); null when none has its length.
// Counting, not requiring, fits: a combo's saved file may simply be missing on this machine.
export function recogniseLayout(node, layouts, saved) {
  let best = null;
  let bestScore = -1;
  layouts.forEach((layout, index) => {
    if (layout.widgets.length !== saved.length) return;
    const score = layout.widgets.filter((name, i) => fits(node, name, saved[i])).length;
    if (score >= bestScore) {
      best = index;
      bestScore = score;
    }
  });
  return best;
}

function shownValue(value) {
  return typeof value === "number" ? String(Math.round(value * 1e6) / 1e6) : JSON.stringify(value);
}

// Set the node's widgets from `saved` (in layout `from`) by name; returns the lines that say what changed.
function applyLayout(node, entry, from, saved) {
  const layout = entry.layouts[from].widgets;
  const live = entry.layouts[entry.layouts.length - 1].widgets;
  const named = Object.fromEntries(layout.map((name, i) => [name, saved[i]]));
  const said = [];
  for (const name of live) {
    const widget = widgetNamed(node, name);
    if (!widget) continue;
    if (name in named) {
      widget.value = named[name];
    } else if (name in (entry.absent_means || {})) {
      widget.value = entry.absent_means[name];
      said.push(`${name} = ${shownValue(widget.value)} (what ${entry.layouts[from].version} did)`);
    }
  }
  const dropped = layout.filter((name) => name !== "control_after_generate" && !live.includes(name));
  if (dropped.length) said.push(`no longer used: ${dropped.join(", ")}`);
  return said;
}

const pending = [];
let flushScheduled = false;

function say(line) {
  pending.push(line);
  if (flushScheduled) return;
  flushScheduled = true;
  setTimeout(() => {
    flushScheduled = false;
    const lines = pending.splice(0);
    const summary = "FK Steering: workflow from an older version updated";
    const detail = lines.join("\n");
    console.info(`${TAG} ${summary}:\n${detail}`);
    window.fkMigrationNotices = [...(window.fkMigrationNotices || []), { summary, detail }];
    const toast = app.extensionManager?.toast;
    if (toast?.add) {
      toast.add({ severity: "info", summary, detail, life: 15000 });
    } else if (app.ui?.dialog?.show) {
      app.ui.dialog.show(`${summary}:\n${detail}`);
    }
  }, 0);
}

function nodeLabel(node) {
  return `${node.title || node.type} #${node.id}`;
}

export function migrateNode(node, info) {
  const entry = TABLE?.[node.type];
  const saved = info?.widgets_values;
  if (!entry || !Array.isArray(saved)) return;
  const liveIndex = entry.layouts.length - 1;
  const from = recogniseLayout(node, entry.layouts, saved);
  if (from === liveIndex) return;
  if (from === null) {
    say(`${nodeLabel(node)}: its saved values match no known layout of this node; check its widgets`);
    return;
  }
  const changes = applyLayout(node, entry, from, saved);
  const live = entry.layouts[liveIndex].widgets;
  const isPrefix = entry.layouts[from].widgets.every((name, i) => live[i] === name);
  if (isPrefix && !changes.length) return; // widgets appended since: the positional load was already right
  const note = changes.length ? `: ${changes.join("; ")}` : "";
  say(`${nodeLabel(node)}: values from ${entry.layouts[from].version} mapped by name${note}`);
}

app.registerExtension({
  name: "fk_steering.migrate_widgets",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!TABLE?.[nodeData.name]) return;
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function (info) {
      const r = onConfigure?.apply(this, arguments);
      try {
        migrateNode(this, info);
      } catch (err) {
        console.warn(`${TAG} could not map the saved widget values of ${nodeLabel(this)}:`, err);
      }
      return r;
    };
  },
});
