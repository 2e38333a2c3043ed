// FK Steering live view: particle gallery, reward/ESS chart and lineage on the FK sampler nodes.
//
// Data: websocket events sent by the pack's server side (nodes/live.py), one run per "run" id:
//   fk_steering.step  {node, run, particles, num_steps, steps: [record...], thumbs?: {sprite, cols, rows, w, h}}
//                     (the first event of a run may have no steps: the run has started)
//   fk_steering.done  {node, run, best_index, chosen_index, trace: Trace.to_dict()}
//                     (chosen_index: the particle the node outputs, framed after the run; best_index when absent)
// A step record may carry lmbda, survivors and cost ({model_s, decode_s, reward_s}); the view shows what is there.
// Cancel and errors come from ComfyUI's own execution_interrupted / execution_error events.
// Without those events (server side absent) the widget only shows a one-line hint: nothing else changes.
// All styles live in fk_live.css under the .fk-live class; colours come from the ComfyUI theme variables.
//
// Two renderers place the view: the classic canvas sizes it from getMinHeight(); the "Nodes 2.0" (Vue nodes)
// mode ignores getMinHeight and lays the element out in the node's DOM, so the same height is also set as a
// CSS min-height (--fk-live-min-height) on the view itself.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

// Nodes that get the view when created; any other node the server reports for gets it at its first event.
const NODE_TYPES = new Set(["FKParticleSampler", "FKSampler"]);
const EVENTS = { step: "fk_steering.step", done: "fk_steering.done" };
const WIDGET_NAME = "fk_live_view";
const MIN_HEIGHT = 610; // gallery + status, cost and (wrapped) note lines + chart + lineage
const PREVIEW_HEIGHT = 260; // room left for the node's own image preview (the contact sheet)
const MAX_TILE_PX = 64; // = the largest thumbnail nodes/live.py sends (MAX_THUMB_PX)
const DEFAULT_MARGIN = 10; // a DOM widget's margin on the canvas (BaseDOMWidgetImpl.DEFAULT_MARGIN)

let spriteCounter = 0;
const views = new Set(); // every live view on the canvas (several FK nodes per graph are fine)

function loadStyles() {
  if (document.querySelector("link[data-fk-live-css]")) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = new URL("./fk_live.css", import.meta.url).href;
  link.dataset.fkLiveCss = "1";
  document.head.appendChild(link);
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  return a !== 0 && (a < 0.01 || a >= 1000) ? v.toExponential(2) : v.toFixed(3);
}

// Status-line numbers (ESS, λ, seconds): about three significant digits, no exponent.
function short(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  return a >= 100 ? String(Math.round(v)) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

const isNumber = (v) => typeof v === "number" && Number.isFinite(v);

// One numbering everywhere (live view, contact sheet, node text): particle i is "#i+1"; its rank by reward is
// shown beside it where it matters.
const label = (i) => `#${i + 1}`;

// A resampling that changed the population: some particle got no copy. A step with λ 0 (best-of-N) resamples
// uniform weights into the same particles: nothing to report.
const changedPopulation = (s) => Boolean(s && s.resampled && s.dropped?.length);

// "ESS 4.90 · kept 5 of 8 · λ 12.3": the numbers of one check that are present in its record.
function checkNumbers(s, particles) {
  if (!s) return [];
  const parts = [];
  if (isNumber(s.ess)) parts.push(`ESS ${short(s.ess)}`);
  if (isNumber(s.survivors)) parts.push(`kept ${s.survivors} of ${particles || s.ancestors?.length || "?"}`);
  if (isNumber(s.lmbda)) parts.push(`λ ${short(s.lmbda)}`);
  return parts;
}

// "check at step 4: 0.42 s (model 0.30 · decode 0.08 · reward 0.04)" from a cost record; "" without one.
function costText(label, cost) {
  if (!cost || typeof cost !== "object") return "";
  const names = [["model_s", "model"], ["decode_s", "decode"], ["reward_s", "reward"]];
  const known = names.filter(([k]) => isNumber(cost[k]));
  if (!known.length) return "";
  const total = known.reduce((sum, [k]) => sum + cost[k], 0);
  return `${label}: ${short(total)} s (` + known.map(([k, name]) => `${name} ${short(cost[k])}`).join(" · ") + ")";
}

// Execution ids are "12" or, inside subgraphs, "5:12" (subgraph node path, then the local id).
function nodeForExecutionId(id) {
  let graph = app.graph?.rootGraph ?? app.graph;
  const parts = String(id).split(":");
  for (const part of parts.slice(0, -1)) {
    const holder = graph?.getNodeById?.(Number(part)) ?? graph?.getNodeById?.(part);
    graph = holder?.subgraph;
  }
  const local = parts[parts.length - 1];
  return graph?.getNodeById?.(Number(local)) ?? graph?.getNodeById?.(local) ?? null;
}

function themeColours(root) {
  const css = getComputedStyle(root);
  const v = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return {
    bg: v("--comfy-input-bg", "#222"),
    fg: v("--fg-color", "#ddd"),
    muted: v("--descrip-text", "#999"),
    grid: v("--border-color", "#444"),
    bandOuter: "rgba(90,130,200,0.35)",
    bandInner: "rgba(110,160,230,0.55)",
    median: "#a9cdff",
    ess: "#6ed282",
    resample: "#e65a5a",
    best: "#ffbe3c",
  };
}

function quantiles(values) {
  const r = values.filter((v) => v !== null && Number.isFinite(v)).sort((a, b) => a - b);
  if (!r.length) return null;
  // linear interpolation between order statistics, as numpy.quantile does (fk_core/charts.py)
  const q = (p) => {
    const pos = (r.length - 1) * p;
    const lo = Math.floor(pos);
    const hi = Math.ceil(pos);
    return r[lo] + (r[hi] - r[lo]) * (pos - lo);
  };
  return [q(0), q(0.25), q(0.5), q(0.75), q(1)];
}

function setupCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, canvas.clientWidth);
  const h = Math.max(1, canvas.clientHeight);
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
}

class LiveView {
  constructor(node) {
    this.node = node;
    this.margin = DEFAULT_MARGIN; // the widget's own margin, once it exists (attach)
    this.root = el("div", "fk-live");
    this.root.dataset.state = "idle";
    this.status = el("div", "fk-live-status", "FK live view: queue the prompt to watch the particles.");
    this.stats = el("div", "fk-live-stats", "");
    this.notes = el("div", "fk-live-notes", "");
    this.gallery = el("div", "fk-live-gallery");
    this.events = el("div", "fk-live-events");
    this.chart = el("canvas", "fk-live-chart");
    this.lineage = el("canvas", "fk-live-lineage");
    this.detail = el("div", "fk-live-detail", "");
    // canvases sit in absolutely positioned boxes: their pixel size must not feed back into the flex layout
    const panel = (caption, canvas) => {
      const box = el("div", "fk-live-panel");
      const holder = el("div", "fk-live-canvas-box");
      holder.append(canvas);
      box.append(el("div", "fk-live-caption", caption), holder);
      return box;
    };
    const chartBox = panel("reward (band: min–max, 25–75%, median) · ESS (green) · ▼ resampled", this.chart);
    const lineageBox = panel("lineage: initial particles (left) → final (right) · click a final particle",
      this.lineage);
    this.root.append(this.status, this.stats, this.notes, this.gallery, this.events, chartBox, lineageBox,
      this.detail);
    this.lineage.addEventListener("click", (e) => this.onLineageClick(e));
    this.reset(null);
    this.pending = false;
    this.resizeObserver = new ResizeObserver(() => this.scheduleDraw());
    this.resizeObserver.observe(this.chart);
    this.resizeObserver.observe(this.lineage);
  }

  reset(run) {
    this.run = run;
    this.particles = 0;
    this.numSteps = null;
    this.steps = [];
    this.byStep = new Map();
    this.thumbs = null;
    this.thumbsVersion = 0;
    this.thumbsStep = null;
    this.thumbsFinal = false; // the thumbnails show the final particles (else the check at thumbsStep)
    this.trace = null;
    this.paths = null;
    this.bestIndex = null;
    this.chosenIndex = null;
    this.selected = null;
    this.state = run ? "running" : "idle";
    this.eventLog = [];
    this.dots = [];
  }

  accept(data) {
    if (data.run !== this.run) this.reset(data.run);
    this.particles = data.particles ?? this.particles;
    this.numSteps = data.num_steps ?? this.numSteps;
  }

  addSteps(records) {
    for (const s of records || []) {
      this.steps.push(s);
      this.byStep.set(s.step, s);
      if (changedPopulation(s)) this.eventLog.push(this.describeResampling(s));
    }
  }

  describeResampling(s) {
    const copied = s.copies
      .map((c, j) => [j, c])
      .filter(([, c]) => c > 1)
      .map(([j, c]) => `${label(j)}×${c}`);
    const dropped = s.dropped.map(label);
    const full = `step ${s.step}: dropped ${dropped.length ? dropped.join(" ") : "none"}` +
      (copied.length ? ` · copied ${copied.join(" ")}` : "");
    // many particles: a count on the line, the full list in the tooltip
    const text = dropped.length + copied.length <= 10 ? full
      : `step ${s.step}: dropped ${dropped.length} · copied ${copied.length} (up to ×${Math.max(...s.copies)})`;
    return { step: s.step, text, full };
  }

  onStep(data) {
    this.accept(data);
    this.state = "running";
    this.addSteps(data.steps);
    if ((data.steps || []).some(changedPopulation)) this.flash();
    this.takeThumbs(data);
    this.scheduleDraw();
  }

  takeThumbs(data) {
    if (!data.thumbs) return;
    this.thumbs = data.thumbs;
    this.thumbsVersion = ++spriteCounter; // unique across runs and nodes
    this.thumbsStep = data.thumbs_step ?? null;
    this.thumbsFinal = Boolean(data.thumbs_final);
  }

  onDone(data) {
    this.accept(data);
    this.trace = data.trace;
    this.particles = this.particles || data.trace.num_particles;
    this.numSteps = this.numSteps || data.trace.num_steps;
    this.steps = data.trace.steps; // the complete record wins over what arrived live
    // for each final particle its slot at every potential step then itself: computed by the engine
    // (fk_core.live_view.compact_trace, fk_core.trace's rule); the view only draws it
    this.paths = Array.isArray(data.trace.lineage) ? data.trace.lineage : null;
    this.byStep = new Map(this.steps.map((s) => [s.step, s]));
    this.bestIndex = data.best_index;
    this.chosenIndex = Number.isInteger(data.chosen_index) ? data.chosen_index : data.best_index;
    this.selected = this.chosenIndex; // what the node outputs: a draw from the final weights need not be the best
    this.takeThumbs(data); // the final particles' thumbnails (servers before issue 19 send none)
    this.state = "done";
    this.scheduleDraw();
  }

  // ComfyUI's execution_interrupted / execution_error: the view keeps what it has and says so
  onCancelled() {
    if (this.state === "running") this.state = "cancelled";
    this.scheduleDraw();
  }

  // a short pulse on the gallery marks each resampling as it happens
  flash() {
    const g = this.gallery;
    g.classList.remove("fk-flash");
    void g.offsetWidth; // restart the CSS animation
    g.classList.add("fk-flash");
  }

  scheduleDraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      try {
        this.draw();
      } catch (err) {
        console.warn("[fk_steering] live view could not draw:", err);
      }
    });
  }

  draw() {
    const r = this.root;
    r.dataset.state = this.state;
    r.style.setProperty("--fk-live-min-height", `${Math.max(0, viewHeight() - 2 * this.margin)}px`);
    r.dataset.steps = String(this.steps.length);
    // visibility first: it changes the canvases' sizes, which the drawing below reads
    this.lineage.closest(".fk-live-panel").hidden = !this.paths;
    this.chart.closest(".fk-live-panel").hidden = this.state === "idle";
    this.drawStatus();
    this.drawGallery();
    this.drawEvents();
    this.drawChart();
    this.drawLineage();
    this.drawDetail();
  }

  drawStatus() {
    const last = this.steps[this.steps.length - 1];
    const of = this.numSteps ? ` of ${this.numSteps}` : "";
    const numbers = checkNumbers(last, this.particles);
    const text = {
      idle: "FK live view: queue the prompt to watch the particles.",
      running: [`running · ${this.particles} particles · step ${last ? last.step : 0}${of}`, ...numbers].join(" · "),
      done: `done · ${this.particles} particles` + (this.numSteps ? ` · ${this.numSteps} steps` : "") +
        ` · ${this.chosenIndex === this.bestIndex ? "best" : "chosen"} ${label(this.chosenIndex ?? 0)}` +
        (this.trace?.final_rewards ? ` reward ${fmt(this.trace.final_rewards[this.chosenIndex])}` : ""),
      cancelled: `cancelled at step ${last ? last.step : 0}${of} · showing what was computed`,
    }[this.state];
    this.status.textContent = text;
    this.status.title = text;
    // second line: the latest check's numbers after the run, and what checks cost (when recorded)
    const lines = [];
    if (this.state !== "running" && numbers.length) {
      lines.push(`last check (step ${last.step}): ${numbers.join(" · ")}`);
    }
    const checkCost = costText(`check at step ${last?.step}`, last?.cost);
    const totalCost = costText("all checks", this.trace?.cost);
    if (this.state === "done" && totalCost) lines.push(totalCost);
    else if (checkCost) lines.push(checkCost);
    this.stats.textContent = lines.join(" · ");
    this.stats.title = lines.join("\n");
    this.stats.hidden = this.state === "idle" || !lines.length;
    const notes = (this.trace?.notes || []).map(String).filter((n) => n.trim());
    this.notes.replaceChildren(...notes.slice(0, 3).map((n) => {
      const line = el("div", "fk-live-note", n);
      line.title = n;
      return line;
    }));
    this.notes.title = notes.join("\n");
    this.notes.dataset.count = String(notes.length);
    this.notes.hidden = !notes.length;
  }

  // After the run the gallery shows the final population: final rewards, no resampling marks (the last
  // check's particles were resampled since), the selected particle framed.
  finalRecord() {
    const t = this.trace;
    if (this.state !== "done" || !t?.final_rewards) return null;
    return { step: null, rewards: t.final_rewards, breakdown: t.final_breakdown, invalid: t.final_invalid || [],
      ranks: t.final_ranks, resampled: false, copies: [] };
  }

  // Which thumbnail final particle i shows: its own (final thumbnails), else its ancestor at the check the
  // thumbnails come from (the lineage the engine computed).
  thumbIndex(i, final) {
    if (!final || this.thumbsFinal || !this.paths) return i;
    const column = this.steps.findIndex((s) => s.step === this.thumbsStep);
    return column >= 0 ? this.paths[i]?.[column] ?? i : i;
  }

  drawGallery() {
    const n = this.particles;
    const g = this.gallery;
    g.hidden = n === 0;
    if (!n) return;
    while (g.children.length > n) g.lastChild.remove();
    while (g.children.length < n) {
      const tile = el("div", "fk-live-tile");
      const index = g.children.length;
      tile.append(el("div", "fk-live-thumb"), el("span", "fk-live-reward"), el("span", "fk-live-badge"));
      tile.addEventListener("click", () => this.selectParticle(index));
      g.append(tile);
    }
    const cols = n <= 8 ? Math.max(n, 4) : Math.max(8, Math.ceil(Math.sqrt(n * 3)));
    // tiles no wider than the thumbnails (64 px): bigger ones would only blur them and take the chart's room
    g.style.gridTemplateColumns = `repeat(${cols}, minmax(0, ${MAX_TILE_PX}px))`;
    g.classList.toggle("fk-many", n > 16); // small tiles: rewards move to the tooltip
    // badges and rewards from the step the thumbnails show, so picture and numbers agree; the final
    // particles once the run is done
    const final = this.finalRecord();
    const rec = final || (this.thumbsStep !== null && this.byStep.get(this.thumbsStep)) ||
      this.steps[this.steps.length - 1];
    const marks = changedPopulation(rec);
    const t = this.thumbs;
    // the sprite (one JPEG with every thumbnail) is set once on the gallery; tiles show their cell of it
    if (t && g.fkSpriteVersion !== this.thumbsVersion) {
      g.style.setProperty("--fk-sprite", `url("${t.sprite}")`);
      g.fkSpriteVersion = this.thumbsVersion;
    }
    g.dataset.shows = final ? "final" : rec ? `step ${rec.step}` : "";
    [...g.children].forEach((tile, i) => {
      const thumb = tile.children[0];
      if (t) {
        const k = this.thumbIndex(i, final);
        const c = k % t.cols;
        const row = Math.floor(k / t.cols);
        thumb.style.backgroundSize = `${t.cols * 100}% ${t.rows * 100}%`;
        thumb.style.backgroundPosition = `${t.cols > 1 ? (c / (t.cols - 1)) * 100 : 0}% ` +
          `${t.rows > 1 ? (row / (t.rows - 1)) * 100 : 0}%`;
        thumb.style.aspectRatio = `${t.w} / ${t.h}`;
        tile.classList.add("fk-has-image");
      }
      const reward = rec ? rec.rewards[i] : null;
      tile.children[1].textContent = `${label(i)} ${fmt(reward)}`;
      const copies = marks ? rec.copies[i] : 1;
      tile.classList.toggle("fk-dropped", marks && copies === 0);
      tile.classList.toggle("fk-copied", marks && copies > 1);
      tile.classList.toggle("fk-invalid", Boolean(rec && rec.invalid.includes(i)));
      tile.classList.toggle("fk-selected", Boolean(final) && i === this.selected);
      tile.children[2].textContent = copies > 1 ? `×${copies}` : copies === 0 ? "✕" : "";
      const parts = rec?.breakdown?.[i] ? ` ${rec.breakdown[i]}` : "";
      const rank = final?.ranks ? ` · rank ${final.ranks[i]} of ${n}` : "";
      tile.title = !rec ? `particle ${label(i)}`
        : final ? `final particle ${label(i)}: reward ${fmt(reward)}${parts}${rank} · click: its lineage`
          : `particle ${label(i)} at step ${rec.step}: reward ${fmt(reward)}${parts}` +
            (marks ? (copies === 0 ? ", dropped by resampling" : `, kept ${copies}×`) : "");
      tile.dataset.breakdown = rec?.breakdown?.[i] ?? "";
    });
  }

  // a click on a final particle's tile selects it, as a click on its row in the lineage does
  selectParticle(i) {
    if (!this.paths || this.state !== "done" || i >= (this.trace?.num_particles ?? 0)) return;
    this.selected = i;
    this.draw();
  }

  drawEvents() {
    const box = this.events;
    box.replaceChildren(...this.eventLog.slice(-3).map((e) => {
      const line = el("div", "fk-live-event", e.text);
      line.title = e.full;
      return line;
    }));
    box.dataset.count = String(this.eventLog.length);
    box.hidden = this.eventLog.length === 0;
  }

  drawChart() {
    const canvas = this.chart;
    const { ctx, w, h } = setupCanvas(canvas);
    const col = themeColours(this.root);
    const n = Math.max(this.particles, 1);
    const pad = { l: 34, r: 26, t: 8, b: 16 };
    const x0 = pad.l;
    const x1 = w - pad.r;
    const y0 = pad.t;
    const y1 = h - pad.b;
    ctx.fillStyle = col.bg;
    ctx.fillRect(0, 0, w, h);
    const pts = this.steps.map((s) => ({ x: s.step, q: quantiles(s.rewards), s }));
    const finalQ = this.trace?.final_rewards ? quantiles(this.trace.final_rewards) : null;
    // x range: the run's step count; before it is known, the node's "steps" widget (or the steps so far)
    const widgetSteps = Number(this.node.widgets?.find((w) => w.name === "steps")?.value) || 0;
    const xMax = this.numSteps || Math.max(1, widgetSteps, ...pts.map((p) => p.x + 1));
    if (finalQ) pts.push({ x: xMax, q: finalQ, s: null });
    const vals = pts.flatMap((p) => (p.q ? [p.q[0], p.q[4]] : []));
    const history = this.selectedHistory();
    if (history) vals.push(...history.filter((v) => v !== null && Number.isFinite(v)));
    let lo = vals.length ? Math.min(...vals) : 0;
    let hi = vals.length ? Math.max(...vals) : 1;
    if (hi - lo < 1e-12) {
      lo -= 0.5;
      hi += 0.5;
    }
    const px = (x) => x0 + ((x1 - x0) * x) / xMax;
    const py = (v) => y1 - ((y1 - y0) * (v - lo)) / (hi - lo);
    const pe = (e) => y1 - ((y1 - y0) * e) / n;

    ctx.strokeStyle = col.grid;
    ctx.lineWidth = 1;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.font = "10px sans-serif";
    ctx.fillStyle = col.muted;
    ctx.textAlign = "right";
    ctx.fillText(fmt(hi), x0 - 3, y0 + 8);
    ctx.fillText(fmt(lo), x0 - 3, y1);
    ctx.textAlign = "left";
    ctx.fillStyle = col.ess;
    ctx.fillText(String(n), x1 + 3, y0 + 8);
    ctx.fillText("0", x1 + 3, y1);
    ctx.fillStyle = col.muted;
    ctx.textAlign = "center";
    ctx.fillText(`step (of ${xMax})`, (x0 + x1) / 2, h - 3);

    let resamples = 0;
    for (const p of pts) {
      if (changedPopulation(p.s)) {
        resamples++;
        ctx.strokeStyle = "rgba(230,90,90,0.35)";
        ctx.beginPath();
        ctx.moveTo(px(p.x), y0);
        ctx.lineTo(px(p.x), y1);
        ctx.stroke();
        ctx.fillStyle = col.resample;
        ctx.beginPath();
        ctx.moveTo(px(p.x) - 4, y0);
        ctx.lineTo(px(p.x) + 4, y0);
        ctx.lineTo(px(p.x), y0 + 6);
        ctx.fill();
      }
    }
    const band = pts.filter((p) => p.q);
    for (const [a, b, fill] of [[0, 4, col.bandOuter], [1, 3, col.bandInner]]) {
      if (band.length < 2) break;
      ctx.fillStyle = fill;
      ctx.beginPath();
      band.forEach((p, k) => (k ? ctx.lineTo(px(p.x), py(p.q[b])) : ctx.moveTo(px(p.x), py(p.q[b]))));
      [...band].reverse().forEach((p) => ctx.lineTo(px(p.x), py(p.q[a])));
      ctx.closePath();
      ctx.fill();
    }
    ctx.strokeStyle = col.median;
    ctx.fillStyle = col.median;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    band.forEach((p, k) => (k ? ctx.lineTo(px(p.x), py(p.q[2])) : ctx.moveTo(px(p.x), py(p.q[2]))));
    ctx.stroke();
    band.forEach((p) => ctx.fillRect(px(p.x) - 1.5, py(p.q[2]) - 1.5, 3, 3));

    const ess = this.steps.filter((s) => Number.isFinite(s.ess));
    ctx.strokeStyle = col.ess;
    ctx.fillStyle = col.ess;
    ctx.beginPath();
    ess.forEach((s, k) => (k ? ctx.lineTo(px(s.step), pe(s.ess)) : ctx.moveTo(px(s.step), pe(s.ess))));
    ctx.stroke();
    ess.forEach((s) => ctx.fillRect(px(s.step) - 1.5, pe(s.ess) - 1.5, 3, 3));

    if (history) {
      const xs = [...this.steps.map((s) => s.step), xMax];
      const hp = history.map((v, k) => [xs[k], v]).filter(([, v]) => v !== null && Number.isFinite(v));
      ctx.strokeStyle = col.best;
      ctx.lineWidth = 2;
      ctx.beginPath();
      hp.forEach(([x, v], k) => (k ? ctx.lineTo(px(x), py(v)) : ctx.moveTo(px(x), py(v))));
      ctx.stroke();
    }
    canvas.dataset.points = String(band.length);
    canvas.dataset.essPoints = String(ess.length);
    canvas.dataset.resamples = String(resamples);
  }

  selectedHistory() {
    if (!this.paths || this.selected === null) return null;
    const path = this.paths[this.selected];
    return [...this.steps.map((s, j) => s.rewards[path[j]]), this.trace.final_rewards?.[this.selected] ?? null];
  }

  drawLineage() {
    const canvas = this.lineage;
    canvas.dataset.selected = this.selected === null ? "" : String(this.selected);
    if (!this.paths) return;
    const { ctx, w, h } = setupCanvas(canvas);
    const col = themeColours(this.root);
    ctx.fillStyle = col.bg;
    ctx.fillRect(0, 0, w, h);
    const n = this.trace.num_particles;
    const steps = this.steps;
    const cols = steps.length + 1;
    const x0 = 10;
    const x1 = w - 10;
    const y0 = 8;
    const y1 = h - 8;
    const cx = (c) => (cols === 1 ? (x0 + x1) / 2 : x0 + ((x1 - x0) * c) / (cols - 1));
    const cy = (i) => (n === 1 ? (y0 + y1) / 2 : y0 + ((y1 - y0) * i) / (n - 1));
    const paths = this.paths;
    const alive = [...Array(cols)].map(() => new Set());
    paths.forEach((p) => p.forEach((slot, c) => alive[c].add(slot)));
    const rewards = [...steps.map((s) => s.rewards), this.trace.final_rewards || []];
    const flat = rewards.flat().filter((v) => v !== null && Number.isFinite(v));
    const lo = flat.length ? Math.min(...flat) : 0;
    const hi = flat.length ? Math.max(...flat) : 1;
    const colour = (v, live) => {
      if (v === null || v === undefined || !Number.isFinite(v)) return "rgb(110,110,110)";
      const u = hi - lo < 1e-12 ? 0.5 : (v - lo) / (hi - lo);
      const k = live ? 1 : 0.45;
      return `rgb(${(40 + 215 * u) * k},${(70 + 150 * u) * k},${(200 - 160 * u) * k})`;
    };
    steps.forEach((s, c) => {
      s.ancestors.forEach((a, i) => {
        const live = alive[c + 1].has(i);
        ctx.strokeStyle = live ? "rgba(130,160,210,0.9)" : "rgba(120,120,140,0.25)";
        ctx.lineWidth = live ? 1.5 : 1;
        ctx.beginPath();
        ctx.moveTo(cx(c), cy(a));
        ctx.lineTo(cx(c + 1), cy(i));
        ctx.stroke();
      });
    });
    if (this.selected !== null) {
      ctx.strokeStyle = col.best;
      ctx.lineWidth = 3;
      ctx.beginPath();
      paths[this.selected].forEach((slot, c) => (c ? ctx.lineTo(cx(c), cy(slot)) : ctx.moveTo(cx(c), cy(slot))));
      ctx.stroke();
    }
    const r = Math.max(1.5, Math.min(4, (y1 - y0) / n / 2.6));
    this.dots = [];
    for (let c = 0; c < cols; c++) {
      for (let i = 0; i < n; i++) {
        ctx.fillStyle = colour(rewards[c][i], alive[c].has(i));
        ctx.beginPath();
        ctx.arc(cx(c), cy(i), r, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    for (let i = 0; i < n; i++) this.dots.push({ i, x: cx(cols - 1), y: cy(i) });
    if (this.selected !== null) {
      ctx.strokeStyle = col.best;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(cx(cols - 1), cy(this.selected), r + 3, 0, 2 * Math.PI);
      ctx.stroke();
    }
    canvas.dataset.survivors = String(new Set(paths.map((p) => p[0])).size);
  }

  onLineageClick(e) {
    if (!this.paths || !this.dots.length) return;
    const rect = this.lineage.getBoundingClientRect();
    // the canvas may be drawn scaled (canvas zoom): map the click into drawing coordinates
    const x = ((e.clientX - rect.left) * this.lineage.clientWidth) / rect.width;
    const y = ((e.clientY - rect.top) * this.lineage.clientHeight) / rect.height;
    // any click picks the final particle on the nearest row: rows are easier to hit than dots
    let best = this.dots[0];
    for (const d of this.dots) if (Math.abs(d.y - y) < Math.abs(best.y - y)) best = d;
    void x;
    this.selectParticle(best.i);
  }

  drawDetail() {
    if (!this.paths || this.selected === null) {
      this.detail.hidden = true;
      return;
    }
    const paths = this.paths;
    const hist = this.selectedHistory();
    this.detail.hidden = false;
    this.detail.dataset.particle = String(this.selected);
    const parts = this.trace?.final_breakdown?.[this.selected];
    const rank = this.trace?.final_ranks?.[this.selected];
    this.detail.textContent =
      `${label(this.selected)} (from initial ${label(paths[this.selected][0])}` +
      `${this.selected === this.bestIndex ? ", best" : this.selected === this.chosenIndex ? ", chosen" : ""})` +
      ` rewards: ${hist.map(fmt).join(" → ")}` + (parts ? ` ${parts}` : "") +
      (Number.isInteger(rank) && rank > 1 ? ` · rank ${rank}` : "");
  }

  destroy() {
    this.resizeObserver.disconnect();
    views.delete(this);
  }
}

// The height the view asks for: room for gallery, chart and lineage, from the start. The node gets its full
// size when it is created or loaded, so a run never grows it over its neighbours (the hint sits at the top
// before the first run).
function viewHeight() {
  return MIN_HEIGHT;
}

// Room for the node's own image preview (FK Particle Sampler's contact sheet) below the view, reserved with it.
function previewRoom(node) {
  return (node.outputs || []).some((o) => o.type === "IMAGE") ? PREVIEW_HEIGHT : 0;
}

// Grow (never shrink) the node to what its widgets and previews need.
function fitNode(node, minWidth = 0, extraHeight = 0) {
  const [w, h] = node.size;
  const need = node.computeSize()[1] + extraHeight;
  if (need > h || w < minWidth) node.setSize([Math.max(w, minWidth), Math.max(h, need)]);
  node.setDirtyCanvas?.(true, true);
}

function viewFor(id) {
  const node = nodeForExecutionId(id);
  if (node && !node.fkLiveView) attach(node);
  return node?.fkLiveView ?? null;
}

// The canvas draws a DOM widget (widget.width ?? node width) wide. The properties panel of new front ends
// renders widgets it lists with its own canvas and writes its panel's width into widget.width; on our view
// that would shrink (or widen) it on the node and keep it so after the panel closes. The view always spans
// the node: width stays undefined.
function followNodeWidth(widget) {
  Object.defineProperty(widget, "width", {
    configurable: true,
    enumerable: false,
    get: () => undefined,
    set: () => {},
  });
}

function attach(node) {
  if (node.fkLiveView) return;
  loadStyles();
  const view = new LiveView(node);
  node.fkLiveView = view;
  views.add(view);
  const widget = node.addDOMWidget(WIDGET_NAME, "fk_live", view.root, {
    serialize: false, // nothing of the view goes into the workflow or the prompt
    hideOnZoom: false,
    hideInPanel: true, // the properties panel would list it as an empty parameter row
    getMinHeight: () => viewHeight(),
  });
  widget.serialize = false;
  view.margin = Number.isFinite(widget.margin) ? widget.margin : DEFAULT_MARGIN;
  followNodeWidth(widget);
  fitNode(node, 420, previewRoom(node));
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    view.destroy();
    return onRemoved?.apply(this, arguments);
  };
  view.draw();
}

function on(type, handler) {
  api.addEventListener(type, (e) => {
    try {
      handler(e.detail);
    } catch (err) {
      console.warn(`[fk_steering] live view ignored a ${type} event:`, err);
    }
  });
}

app.registerExtension({
  name: "fk_steering.live_view",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODE_TYPES.has(nodeData.name)) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      attach(this);
      return r;
    };
  },
  // a saved workflow sets the node's size after creation: give the view its room again (never shrinks)
  loadedGraphNode(node) {
    if (node.fkLiveView) requestAnimationFrame(() => fitNode(node, 420, previewRoom(node)));
  },
  async setup() {
    // sawLive: this prompt's run reached the view live; otherwise the node's UI output replays it (below)
    const live = (d) => {
      const view = viewFor(d.node);
      if (view) view.sawLive = true;
      return view;
    };
    on(EVENTS.step, (d) => live(d)?.onStep(d));
    on(EVENTS.done, (d) => live(d)?.onDone(d));
    on("execution_start", () => views.forEach((v) => (v.sawLive = false)));
    // Cancel / errors: stop every running view (the sampling thread sends nothing after an interrupt).
    const stopAll = () => views.forEach((v) => v.onCancelled());
    // The node's own image preview (the contact sheet) arrives after the run: grow the node so the
    // preview sits inside it instead of spilling below the live view.
    on("executed", (d) => {
      const node = d && nodeForExecutionId(d.display_node ?? d.node);
      if (!node?.fkLiveView) return;
      // A run served from ComfyUI's cache sends no live events, only the node's UI output: draw its final state.
      const replay = d.output?.fk_live?.[0];
      if (replay?.trace && !node.fkLiveView.sawLive) {
        node.fkLiveView.onStep(replay);
        node.fkLiveView.onDone(replay);
      }
      const room = d.output?.images?.length ? PREVIEW_HEIGHT : 0;
      setTimeout(() => fitNode(node, 0, room), 50);
    });
    on("execution_interrupted", stopAll);
    on("execution_error", stopAll);
  },
});
