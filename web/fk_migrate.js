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
// FK Reward Loader groups its settings under the reward on hosts with DynamicCombo (ComfyUI 0.33+): its
// widgets are reward, reward.<each setting the chosen reward reads>, weights, ... The table writes that layout
// once as "reward.*" with "grouped": "reward"; which settings an option has comes from the node definition
// (the DynamicCombo's options, or on older hosts the reward combo's fk_settings: both from fk_core's table).
// Values match by their plain name, so a flat save fills reward.color from color and a grouped save fills color.
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
const GROUPED_TYPE = "COMFY_DYNAMICCOMBO_V3";
const NODE_DEFS = {}; // node type -> its definition (beforeRegisterNodeDef), for grouped inputs' options

function inputSpec(nodeData, name) {
  return nodeData?.input?.required?.[name] ?? nodeData?.input?.optional?.[name];
}

function baseName(name) {
  return name.split(".").pop();
}

// The inputs that option `option` of grouped input `group` brings, in order (none for an unknown option).
function groupInputs(nodeData, group, option) {
  const spec = inputSpec(nodeData, group);
  if (!spec) return [];
  if (spec[0] === GROUPED_TYPE) {
    const inputs = spec[1]?.options?.find((o) => o.key === option)?.inputs || {};
    return [...Object.keys(inputs.required || {}), ...Object.keys(inputs.optional || {})];
  }
  return spec[1]?.fk_settings?.[option] || [];
}

// A layout's names with "group.*" replaced by the widgets of the option `optionOf(group)` gives.
function expandLayout(nodeData, names, optionOf) {
  return names.flatMap((name) => {
    if (!name.endsWith(".*")) return [name];
    const group = name.slice(0, -2);
    return groupInputs(nodeData, group, optionOf(group)).map((input) => `${group}.${input}`);
  });
}

// The layout this host's definition gives: a grouped one only where its group is a DynamicCombo.
function liveIndex(entry, nodeData) {
  for (let index = entry.layouts.length - 1; index >= 0; index--) {
    const group = entry.layouts[index].grouped;
    if (!group || inputSpec(nodeData, group)?.[0] === GROUPED_TYPE) return index;
  }
  return entry.layouts.length - 1;
}

// The default a widget has in the node definition (grouped widgets: in any option that has it).
function defaultOf(nodeData, name) {
  const [group, input] = name.includes(".") ? name.split(".") : [null, name];
  if (!group) return inputSpec(nodeData, input)?.[1]?.default;
  for (const option of inputSpec(nodeData, group)?.[1]?.options || []) {
    const spec = option.inputs?.optional?.[input] ?? option.inputs?.required?.[input];
    if (spec) return spec[1]?.default;
  }
  return undefined;
}

function widgetNamed(node, name) {
  return (node.widgets || []).find((w) => w.name === name);
}

// Can `value` be the value of this node's widget called `name`? (A name the node no longer has: any value.)
function fits(node, name, value) {
  if (name === "control_after_generate") return CONTROL_VALUES.includes(value);
  const widget = widgetNamed(node, name) || widgetNamed(node, baseName(name));
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
  const nodeData = NODE_DEFS[node.type];
  layouts.forEach((layout, index) => {
    const names = expandLayout(nodeData, layout.widgets, (group) => saved[layout.widgets.indexOf(group)]);
    if (names.length !== saved.length) return;
    const score = names.filter((name, i) => fits(node, name, saved[i])).length;
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
// Names match by their plain part (reward.color <-> color); a grouped input is set first, so the widgets of
// its option exist; a live widget the save lacks gets absent_means, else its default (never a value restored
// into it by position from another widget).
function applyLayout(node, entry, from, saved, live) {
  const nodeData = NODE_DEFS[node.type];
  const layout = expandLayout(nodeData, entry.layouts[from].widgets, (group) =>
    saved[entry.layouts[from].widgets.indexOf(group)]);
  const named = Object.fromEntries(layout.map((name, i) => [baseName(name), saved[i]]));
  const groups = live.widgets.filter((name) => name.endsWith(".*")).map((name) => name.slice(0, -2));
  for (const group of groups) {
    const widget = widgetNamed(node, group);
    if (widget && group in named) widget.value = named[group];
  }
  const liveNames = expandLayout(nodeData, live.widgets, (group) => named[group]);
  const said = [];
  for (const name of liveNames) {
    const widget = widgetNamed(node, name);
    if (!widget || groups.includes(name)) continue;
    if (baseName(name) in named) {
      widget.value = named[baseName(name)];
    } else if (name in (entry.absent_means || {})) {
      widget.value = entry.absent_means[name];
      said.push(`${name} = ${shownValue(widget.value)} (what ${entry.layouts[from].version} did)`);
    } else if (defaultOf(nodeData, name) !== undefined) {
      widget.value = defaultOf(nodeData, name);
    }
  }
  const liveBases = liveNames.map(baseName);
  const dropped = layout.filter((name) => name !== "control_after_generate" && !liveBases.includes(baseName(name)));
  if (dropped.length) {
    const reader = groups.length ? `not read by ${groups.map((g) => named[g]).join(", ")}` : "no longer used";
    said.push(`${reader}: ${dropped.map(baseName).join(", ")}`);
  }
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

// The newest layout of each form (flat, grouped): the current version as one host or the other shows it. A save
// of the other host's form is this version's own workflow (e.g. an example file opened on ComfyUI 0.33): its
// values are mapped by name without a notice, since nothing of what it does changed.
function currentOnSomeHost(entry, index) {
  const newest = (grouped) => entry.layouts.findLastIndex((layout) => !!layout.grouped === grouped);
  return index === newest(true) || index === newest(false);
}

export function migrateNode(node, info) {
  const entry = TABLE?.[node.type];
  const saved = info?.widgets_values;
  if (!entry || !Array.isArray(saved)) return;
  const live = liveIndex(entry, NODE_DEFS[node.type]);
  const from = recogniseLayout(node, entry.layouts, saved);
  if (from === live) return;
  if (from === null) {
    say(`${nodeLabel(node)}: its saved values match no known layout of this node; check its widgets`);
    return;
  }
  const changes = applyLayout(node, entry, from, saved, entry.layouts[live]);
  const liveWidgets = entry.layouts[live].widgets;
  const isPrefix = entry.layouts[from].widgets.every((name, i) => liveWidgets[i] === name);
  if (isPrefix && !changes.length) return; // widgets appended since: the positional load was already right
  const onlyUnread = changes.every((line) => line.startsWith("not read by"));
  if (currentOnSomeHost(entry, from) && currentOnSomeHost(entry, live) && onlyUnread) return;
  const note = changes.length ? `: ${changes.join("; ")}` : "";
  say(`${nodeLabel(node)}: values from ${entry.layouts[from].version} mapped by name${note}`);
}

app.registerExtension({
  name: "fk_steering.migrate_widgets",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!TABLE?.[nodeData.name]) return;
    NODE_DEFS[nodeData.name] = nodeData;
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
