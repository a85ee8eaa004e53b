// The town map on a canvas: tiles and objects drawn once, agents moving smoothly between ticks, ties overlay.

const TILE_COLORS = {
  ".": "#2b313b", "#": "#59606c", "+": "#8a6d3b", "=": "#383d45", "_": "#6b4f3a", q: "#34475d", ",": "#2d4f31", o: "#2b313b",
};
const OBJECT_COLORS = {
  bed: "#8e7cc3", fridge: "#9fc5e8", stove: "#e06666", shower: "#6fa8dc", wardrobe: "#b4a7d6", till: "#ffd966",
  desk: "#c27ba0", shelf: "#93c47d", bench: "#a2c4c9", table: "#f6b26b", counter_service: "#ffe599",
};
const BASE = 8; // pixels per tile in the cached tile layer (fewer for big towns: the layer stays <= LAYER_MAX px)
const LAYER_MAX = 4096;
const DOT_BELOW = 6; // CSS px per tile under which agents are drawn as plain dots (a big town seen whole)
const JUMP = 4; // tiles: a longer move (teleport, skipped ticks) is not animated

/** A colour per agent: golden-angle hues by slot keep a small town's agents far apart on the wheel. */
export function agentColor(id, slot) {
  let key = slot;
  if (typeof key !== "number") {
    key = 0;
    for (const c of id) key = (Math.imul(key, 31) + c.charCodeAt(0)) >>> 0;
  }
  const hue = Math.round((key * 137.508) % 360);
  const light = [62, 72, 52][Math.floor(key / 3) % 3];
  return `hsl(${hue}, 75%, ${light}%)`;
}

export class MapView extends EventTarget {
  constructor(canvas, town) {
    super();
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.town = town;
    this.agents = new Map(); // id -> {fromX, fromY, toX, toY, t0, dur, color, data}
    this.state = null;
    this.selected = null;
    this.cursor = null;
    this.showTies = false;
    this.updateGap = 250; // smoothed ms between state updates: how long a step is animated
    this.lastUpdate = 0;
    this.zoom = 1; // 1 = the whole town fits
    this.center = { x: town.width / 2, y: town.height / 2 };
    this.base = Math.max(1, Math.min(BASE, Math.floor(LAYER_MAX / Math.max(town.width, town.height))));
    this.tiles = this.drawTiles();
    this.frameMs = 0; // smoothed milliseconds render() takes (the page shows it; tests read it)
    this.drawnAgents = 0; // agents drawn by the last render (only those in view)
    this.resize();
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.bindInput();
  }

  drawTiles() {
    const { width, height, tiles, objects } = this.town;
    const BASE = this.base;
    const layer = document.createElement("canvas");
    layer.width = width * BASE;
    layer.height = height * BASE;
    const g = layer.getContext("2d");
    for (let y = 0; y < height; y++) {
      const row = tiles[y];
      for (let x = 0; x < width; x++) {
        g.fillStyle = TILE_COLORS[row[x]] || "#000";
        g.fillRect(x * BASE, y * BASE, BASE, BASE);
      }
    }
    for (const o of objects) {
      g.fillStyle = OBJECT_COLORS[o.type] || "#ccc";
      const pad = BASE > 2 ? 1 : 0;
      g.fillRect(o.x * BASE + pad, o.y * BASE + pad, BASE - 2 * pad, BASE - 2 * pad);
    }
    return layer;
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const { clientWidth: w, clientHeight: h } = this.canvas;
    this.canvas.width = Math.max(1, Math.round(w * dpr));
    this.canvas.height = Math.max(1, Math.round(h * dpr));
    this.dpr = dpr;
  }

  /** CSS pixels per tile. */
  get scale() {
    const { clientWidth: w, clientHeight: h } = this.canvas;
    return Math.min(w / this.town.width, h / this.town.height) * this.zoom;
  }

  /** Canvas (CSS px) position of a tile coordinate (the tile's centre for integer coordinates). */
  toScreen(x, y) {
    const s = this.scale;
    const { clientWidth: w, clientHeight: h } = this.canvas;
    return { x: w / 2 + (x + 0.5 - this.center.x) * s, y: h / 2 + (y + 0.5 - this.center.y) * s };
  }

  toTile(px, py) {
    const s = this.scale;
    const { clientWidth: w, clientHeight: h } = this.canvas;
    return { x: (px - w / 2) / s + this.center.x - 0.5, y: (py - h / 2) / s + this.center.y - 0.5 };
  }

  /** Take a new state: each agent walks from where it is drawn now to its new tile. */
  setState(state) {
    const now = performance.now();
    if (this.lastUpdate) this.updateGap = 0.7 * this.updateGap + 0.3 * Math.min(now - this.lastUpdate, 1000);
    this.lastUpdate = now;
    const dur = Math.min(this.updateGap, 400);
    const seen = new Set();
    for (const [id, a] of Object.entries(state.agents || {})) {
      seen.add(id);
      const known = this.agents.get(id);
      if (!known) {
        this.agents.set(id, { fromX: a.x, fromY: a.y, toX: a.x, toY: a.y, t0: now, dur, color: agentColor(id, a.slot), data: a });
        continue;
      }
      const p = this.position(known, now);
      const far = Math.abs(a.x - p.x) + Math.abs(a.y - p.y) > JUMP;
      Object.assign(known, { fromX: far ? a.x : p.x, fromY: far ? a.y : p.y, toX: a.x, toY: a.y, t0: now, dur, data: a });
    }
    for (const id of [...this.agents.keys()]) if (!seen.has(id)) this.agents.delete(id);
    this.state = state;
  }

  position(agent, now) {
    const t = agent.dur > 0 ? Math.min(1, (now - agent.t0) / agent.dur) : 1;
    return { x: agent.fromX + (agent.toX - agent.fromX) * t, y: agent.fromY + (agent.toY - agent.fromY) * t };
  }

  /** Every agent drawn now, with its (interpolated) tile position. */
  drawn() {
    const now = performance.now();
    return [...this.agents.entries()].map(([id, a]) => ({ id, ...this.position(a, now) }));
  }

  /** Client (page) coordinates of an agent's centre, or null. */
  screenOf(id) {
    const a = this.agents.get(id);
    if (!a) return null;
    const p = this.position(a, performance.now());
    const s = this.toScreen(p.x, p.y);
    const r = this.canvas.getBoundingClientRect();
    return { x: r.left + s.x, y: r.top + s.y };
  }

  pick(px, py) {
    const now = performance.now();
    const radius = Math.max(12, this.scale * 0.8);
    let best = null;
    let bestD = radius;
    for (const [id, a] of this.agents) {
      const p = this.position(a, now);
      const s = this.toScreen(p.x, p.y);
      const d = Math.hypot(s.x - px, s.y - py);
      if (d <= bestD) {
        best = id;
        bestD = d;
      }
    }
    return best;
  }

  select(id, { focus = false } = {}) {
    this.selected = id;
    this.cursor = id;
    if (focus && id && this.agents.has(id) && this.zoom > 1) {
      const a = this.agents.get(id);
      this.center = { x: a.toX + 0.5, y: a.toY + 0.5 };
    }
    this.dispatchEvent(new CustomEvent("select", { detail: { id } }));
  }

  zoomBy(factor) {
    this.zoom = Math.min(12, Math.max(1, this.zoom * factor));
    if (this.zoom === 1) this.center = { x: this.town.width / 2, y: this.town.height / 2 };
  }

  bindInput() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, cx: this.center.x, cy: this.center.y, moved: false };
    });
    c.addEventListener("pointermove", (e) => {
      if (!drag || this.zoom === 1) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
      if (drag.moved) this.center = { x: drag.cx - dx / this.scale, y: drag.cy - dy / this.scale };
    });
    c.addEventListener("pointerup", (e) => {
      const moved = drag && drag.moved;
      drag = null;
      if (moved) return;
      const r = c.getBoundingClientRect();
      const id = this.pick(e.clientX - r.left, e.clientY - r.top);
      if (id) this.select(id);
    });
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      this.zoomBy(e.deltaY < 0 ? 1.25 : 0.8);
    }, { passive: false });
    c.addEventListener("keydown", (e) => this.onKey(e));
  }

  onKey(e) {
    const ids = [...this.agents.keys()].sort();
    if (!ids.length) return;
    const at = ids.indexOf(this.cursor);
    if (["ArrowRight", "ArrowDown", "ArrowLeft", "ArrowUp"].includes(e.key)) {
      e.preventDefault();
      const step = e.key === "ArrowRight" || e.key === "ArrowDown" ? 1 : -1;
      this.cursor = ids[(at + step + ids.length) % ids.length];
      const a = this.agents.get(this.cursor);
      this.dispatchEvent(new CustomEvent("cursor", { detail: { id: this.cursor, agent: a.data } }));
    } else if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      if (this.cursor) this.select(this.cursor, { focus: true });
    } else if (e.key === "Escape") {
      this.select(null);
    } else if (e.key === "+" || e.key === "=") {
      this.zoomBy(1.5);
    } else if (e.key === "-") {
      this.zoomBy(1 / 1.5);
    } else if (e.key === "0") {
      this.zoomBy(0);
    }
  }

  /** The tiles in view (with a tile of margin): {x0, y0, x1, y1}, clipped to the town. */
  visible() {
    const { clientWidth: w, clientHeight: h } = this.canvas;
    const a = this.toTile(0, 0);
    const b = this.toTile(w, h);
    return {
      x0: Math.max(0, Math.floor(a.x) - 1), y0: Math.max(0, Math.floor(a.y) - 1),
      x1: Math.min(this.town.width - 1, Math.ceil(b.x) + 1), y1: Math.min(this.town.height - 1, Math.ceil(b.y) + 1),
    };
  }

  /** Draw what is in view only: the visible part of the tile layer, then the objects and agents on it. */
  render() {
    const started = performance.now();
    const ctx = this.ctx;
    const { clientWidth: w, clientHeight: h } = this.canvas;
    const s = this.scale;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = false;
    const v = this.visible();
    const inView = (p) => p.x >= v.x0 && p.x <= v.x1 && p.y >= v.y0 && p.y <= v.y1;
    const cols = v.x1 - v.x0 + 1;
    const rows = v.y1 - v.y0 + 1;
    const origin = this.toScreen(v.x0 - 0.5, v.y0 - 0.5);
    const B = this.base;
    ctx.drawImage(this.tiles, v.x0 * B, v.y0 * B, cols * B, rows * B, origin.x, origin.y, cols * s, rows * s);
    if (this.state && this.state.view) this.drawServed(ctx, s, v, this.state.view);
    if (s >= 10) this.drawPlaceNames(ctx, s, inView);
    if (this.state) this.drawBusyObjects(ctx, s, inView);
    const now = performance.now();
    const at = new Map();
    for (const [id, a] of this.agents) {
      const p = this.position(a, now);
      if (inView(p) || id === this.selected) at.set(id, p);
    }
    if (this.showTies) this.drawTies(ctx, s, at);
    if (s < DOT_BELOW) {
      this.drawDots(ctx, s, at);
    } else {
      for (const [id, p] of at) this.drawAgent(ctx, s, id, this.agents.get(id), p);
    }
    this.drawnAgents = at.size;
    this.frameMs = 0.9 * this.frameMs + 0.1 * (performance.now() - started);
  }

  /** Agents as plain squares, one fill per colour run: a whole big town stays cheap to draw. */
  drawDots(ctx, s, at) {
    const size = Math.max(2, s * 0.9);
    for (const [id, p] of at) {
      const a = this.agents.get(id);
      const c = this.toScreen(p.x, p.y);
      ctx.fillStyle = a.data.asleep ? "#6d7686" : a.color;
      ctx.fillRect(c.x - size / 2, c.y - size / 2, size, size);
      if (id === this.selected || id === this.cursor) {
        ctx.strokeStyle = id === this.selected ? "#ffffff" : "#ffd166";
        ctx.lineWidth = 2;
        ctx.strokeRect(c.x - size / 2 - 3, c.y - size / 2 - 3, size + 6, size + 6);
      }
    }
  }

  /**
   * A large town streams only the viewport, at most server.viewport_max_tiles a side: when more is shown, shade
   * what lies outside the rectangle served (its agents are not sent) and say how to see them.
   */
  drawServed(ctx, s, v, view) {
    const [x0, y0, x1, y1] = view.rect;
    if (x0 <= v.x0 && y0 <= v.y0 && x1 >= v.x1 && y1 >= v.y1) return;
    const { clientWidth: w, clientHeight: h } = this.canvas;
    const a = this.toScreen(x0 - 0.5, y0 - 0.5);
    const b = this.toScreen(x1 + 0.5, y1 + 0.5);
    ctx.fillStyle = "rgba(8,10,14,0.55)";
    ctx.fillRect(0, 0, w, Math.max(0, a.y));
    ctx.fillRect(0, b.y, w, Math.max(0, h - b.y));
    ctx.fillRect(0, a.y, Math.max(0, a.x), b.y - a.y);
    ctx.fillRect(b.x, a.y, Math.max(0, w - b.x), b.y - a.y);
    ctx.strokeStyle = "rgba(108,182,255,0.8)";
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = 1.5;
    ctx.strokeRect(a.x, a.y, b.x - a.x, b.y - a.y);
    ctx.setLineDash([]);
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.fillStyle = "#e7ebf0";
    ctx.fillText(`agents shown inside the box only (${view.max_tiles} tiles a side at most): zoom in`, 8, 8);
  }

  drawPlaceNames(ctx, s, inView) {
    ctx.font = `${Math.min(14, s * 0.7)}px system-ui, sans-serif`;
    ctx.fillStyle = "rgba(231,235,240,0.55)";
    ctx.textBaseline = "top";
    for (const p of this.town.places) {
      if (!inView({ x: p.rect[0], y: p.rect[1] })) continue;
      const o = this.toScreen(p.rect[0] + 0.5, p.rect[1] + 0.5);
      ctx.fillText(p.id, o.x - s / 2 + 2, o.y - s / 2 + 2);
    }
  }

  drawBusyObjects(ctx, s, inView) {
    ctx.lineWidth = Math.max(1, s * 0.12);
    for (const o of Object.values(this.state.objects || {})) {
      if ((!o.user && !o.queue) || !inView(o)) continue;
      const c = this.toScreen(o.x, o.y);
      ctx.strokeStyle = o.user ? "#ffffff" : "#ffd166";
      ctx.strokeRect(c.x - s / 2 + 1, c.y - s / 2 + 1, s - 2, s - 2);
    }
  }

  drawTies(ctx, s, at) {
    const pairs = new Map();
    for (const [id, a] of this.agents) {
      const ties = a.data.ties || {};
      for (const [kind, list, field] of [["friend", ties.friends, "trust"], ["rival", ties.rivals, "rivalry"]]) {
        for (const t of list || []) {
          if (!at.has(t.id)) continue;
          const key = [id, t.id].sort().join("|") + kind;
          const strength = Math.abs(t[field]);
          if (!pairs.has(key) || pairs.get(key).strength < strength) pairs.set(key, { a: id, b: t.id, kind, strength });
        }
      }
    }
    for (const p of pairs.values()) {
      const a = this.toScreen(at.get(p.a).x, at.get(p.a).y);
      const b = this.toScreen(at.get(p.b).x, at.get(p.b).y);
      ctx.strokeStyle = p.kind === "friend" ? "rgba(76,195,138,0.85)" : "rgba(239,107,107,0.85)";
      ctx.lineWidth = 1 + p.strength * Math.max(3, s * 0.4);
      ctx.beginPath();
      ctx.moveTo(a.x, a.y);
      ctx.lineTo(b.x, b.y);
      ctx.stroke();
    }
  }

  drawAgent(ctx, s, id, a, p) {
    const c = this.toScreen(p.x, p.y);
    const r = Math.max(4, s * 0.46);
    ctx.fillStyle = a.color;
    ctx.beginPath();
    ctx.arc(c.x, c.y, r, 0, Math.PI * 2);
    ctx.fill();
    ctx.strokeStyle = a.data.asleep ? "#6d7686" : "#0b0e13";
    ctx.lineWidth = Math.max(1, s * 0.1);
    ctx.stroke();
    if (a.data.asleep) {
      ctx.fillStyle = "rgba(12,15,20,0.45)";
      ctx.fill();
    }
    if (a.data.possessed_by) {
      ctx.strokeStyle = "#ff9f43";
      ctx.lineWidth = 2;
      ctx.stroke();
    }
    if (id === this.selected || id === this.cursor) {
      ctx.strokeStyle = id === this.selected ? "#ffffff" : "#ffd166";
      ctx.lineWidth = 2.5;
      ctx.beginPath();
      ctx.arc(c.x, c.y, r + 3, 0, Math.PI * 2);
      ctx.stroke();
    }
    if (s >= 14 || id === this.selected) {
      ctx.font = "12px system-ui, sans-serif";
      ctx.textBaseline = "bottom";
      ctx.fillStyle = "#e7ebf0";
      ctx.fillText(id, c.x + r + 2, c.y - r);
    }
  }
}
