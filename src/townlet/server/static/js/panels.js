// The side panels: agent list, narration ticker, KPI charts over time, telemetry health.

import { agentColor } from "./map.js";
import { el, fixed, $ } from "./dom.js";

/** A button per agent (the keyboard route to every card). */
export class AgentList {
  constructor(onPick) {
    this.root = $("agents");
    this.count = $("agent-count");
    this.onPick = onPick;
    this.buttons = new Map();
    this.selected = null;
  }

  render(state) {
    const agents = state.agents || {};
    const ids = Object.keys(agents).sort();
    // a large town's viewport stream holds the agents in view only; the summary counts the whole town
    this.count.textContent = state.summary ? `(${ids.length} in view of ${state.summary.population})` : `(${ids.length})`;
    for (const [id, li] of this.buttons) {
      if (!(id in agents)) {
        li.remove();
        this.buttons.delete(id);
      }
    }
    ids.forEach((id, i) => {
      let li = this.buttons.get(id);
      if (!li) {
        const button = el("button", { type: "button", "data-agent": id, onclick: () => this.onPick(id) },
          el("span", { class: "swatch", style: { background: agentColor(id, agents[id].slot) }, "aria-hidden": "true" }),
          el("span", { class: "name", text: id }), el("span", { class: "what muted" }));
        li = el("li", {}, button);
        this.buttons.set(id, li);
      }
      if (this.root.children[i] !== li) this.root.insertBefore(li, this.root.children[i] || null);
      const a = agents[id];
      const what = `${a.option || a.activity}${a.place ? ` · ${a.place}` : ""}`;
      const label = li.querySelector(".what");
      if (label.textContent !== what) label.textContent = what;
      li.firstChild.setAttribute("aria-pressed", id === this.selected ? "true" : "false");
    });
  }
}

/** Narration lines, newest first; a line about an agent focuses it when clicked. */
export class Ticker {
  constructor(onFocus) {
    this.root = $("ticker");
    this.empty = $("ticker-empty");
    this.onFocus = onFocus;
    this.seen = new Set();
  }

  render(state) {
    const lines = state.narration || [];
    const fresh = [];
    for (const line of lines) {
      const key = `${line.tick}|${line.text}`;
      if (this.seen.has(key)) continue;
      this.seen.add(key);
      fresh.push(line);
    }
    for (const line of fresh) {
      const when = el("span", { class: "when", text: `t${line.tick}` });
      const item = line.agent
        ? el("button", {
          type: "button", "data-agent": line.agent, title: `Focus ${line.agent}`,
          onclick: () => this.onFocus(line.agent),
        }, when, line.text)
        : el("span", {}, when, line.text);
      this.root.prepend(el("li", { "data-category": line.category || "" }, item));
    }
    while (this.root.children.length > 50) this.root.lastChild.remove();
    this.empty.hidden = this.root.children.length > 0;
  }
}

const SERIES = [
  ["need_ok_share", "needs ok", (s) => s.kpis.need_ok_share, 0, 1],
  ["attendance", "attendance", (s) => s.kpis.attendance, 0, 1],
  ["lateness", "lateness", (s) => s.kpis.lateness, 0, 1],
  ["wallet_mean", "mean wallet", (s) => (s.kpis.money || {}).wallet_mean, null, null],
  ["agents", "agents", (s) => (s.summary ? s.summary.population : Object.keys(s.agents || {}).length), 0, null],
  ["queue_conflicts", "queue conflicts", (s) => s.kpis.queue_conflicts, 0, null],
];

/** Small line charts of headline KPIs, one point per tick seen (the last 600). */
export class KpiCharts {
  constructor() {
    this.root = $("charts");
    this.points = [];
    this.charts = SERIES.map(([key, label]) => {
      const canvas = el("canvas", { role: "img", "aria-label": `${label} over time` });
      const value = el("span", { class: "value", "data-kpi": key, text: "–" });
      this.root.append(el("figure", { class: "chart" }, el("figcaption", {}, el("span", { text: label }), value), canvas));
      return { canvas, value };
    });
  }

  add(state) {
    if (!state.kpis) return;
    const last = this.points[this.points.length - 1];
    if (last && last.tick === state.tick) this.points.pop();
    if (last && state.tick < last.tick) this.points = [];
    this.points.push({ tick: state.tick, values: SERIES.map(([, , get]) => get(state)) });
    if (this.points.length > 600) this.points.shift();
  }

  render() {
    SERIES.forEach(([, , , lo, hi], i) => {
      const { canvas, value } = this.charts[i];
      const values = this.points.map((p) => p.values[i]).filter((v) => typeof v === "number");
      const latest = values[values.length - 1];
      value.textContent = typeof latest === "number" ? (Number.isInteger(latest) ? String(latest) : latest.toFixed(3)) : "–";
      const dpr = window.devicePixelRatio || 1;
      const w = canvas.clientWidth;
      const h = canvas.clientHeight;
      if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
      if (canvas.height !== Math.round(h * dpr)) canvas.height = Math.round(h * dpr);
      const g = canvas.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, h);
      if (values.length < 2) return;
      const min = lo ?? Math.min(...values);
      const max = Math.max(hi ?? Math.max(...values), min + 1e-9);
      g.strokeStyle = "#6cb6ff";
      g.lineWidth = 1.5;
      g.beginPath();
      values.forEach((v, k) => {
        const x = (k / (values.length - 1)) * (w - 4) + 2;
        const y = h - 3 - ((v - min) / (max - min)) * (h - 6);
        if (k === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      g.stroke();
    });
  }
}

/** What the page receives (rate, gaps, snapshots) and what the server says about its transports. */
export class HealthPanel {
  constructor(stream) {
    this.root = $("health");
    this.stream = stream;
    this.prev = { at: performance.now(), messages: 0, tick: null };
    this.rate = 0;
    this.tickRate = 0;
  }

  render(state) {
    const s = this.stream.stats;
    const now = performance.now();
    const dt = (now - this.prev.at) / 1000;
    if (dt >= 1) {
      this.rate = (s.messages - this.prev.messages) / dt;
      if (state && this.prev.tick !== null) this.tickRate = Math.max(0, (state.tick - this.prev.tick) / dt);
      this.prev = { at: now, messages: s.messages, tick: state ? state.tick : null };
    }
    const viewers = state && state.transports ? state.transports.viewers : null;
    const perf = state ? state.perf : null;
    const age = s.lastMessageAt ? (now - s.lastMessageAt) / 1000 : null;
    const rows = [
      ["connection", s.connected ? "live" : "reconnecting"],
      ["messages/s", this.rate.toFixed(1)],
      ["ticks/s", this.tickRate.toFixed(1)],
      ["last message", age === null ? "–" : `${age.toFixed(1)} s ago`],
      ["snapshots · diffs", `${s.snapshots} · ${s.diffs}`],
      ["gaps · reconnects", `${s.gaps} · ${s.reconnects}`],
      ["server: viewers", viewers ? String(viewers.clients ?? "–") : "–"],
      ["server: dropped", viewers ? `${viewers.dropped} (${fixed((viewers.drop_rate || 0) * 100, 1)}%)` : "–"],
      ["server: tick ms", perf ? fixed(perf.tick_ms_mean, 3) : "–"],
    ];
    const items = rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { "data-health": k, text: v })]);
    this.root.replaceChildren(...items);
  }
}
