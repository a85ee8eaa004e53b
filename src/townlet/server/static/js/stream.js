// The telemetry stream: a WebSocket that yields the town's state (snapshot, then merge-patch diffs) and events.

/** Apply a JSON Merge Patch (RFC 7386) to `target` in place. */
export function applyPatch(target, patch) {
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete target[key];
    } else if (typeof value === "object" && !Array.isArray(value)) {
      if (typeof target[key] !== "object" || target[key] === null || Array.isArray(target[key])) target[key] = {};
      applyPatch(target[key], value);
    } else {
      target[key] = value;
    }
  }
  return target;
}

/**
 * Where the stream of the page's own server lives. `rect` ([x0, y0, x1, y1] tiles) is the first viewport: a large
 * town (server.viewport_above agents) then sends only what lies there, plus a town summary (?view=auto).
 */
export function streamUrl(location, rect) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/ws/telemetry?frames=tick`; // one frame per tick: its messages, one a line
  return rect ? `${url}&rect=${rect.map((v) => Math.round(v)).join(",")}` : url;
}

/**
 * A self-reconnecting telemetry client. Emits "state" (after a snapshot or a diff), "event" (one event
 * message), "status" (connection changes) and "refused" (the server refused a view message). A diff that does
 * not follow on means lost messages: the client reconnects to start again from a fresh snapshot. `url` is a
 * string or a function giving one at each (re)connection.
 */
export class TelemetryStream extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.state = null;
    this.header = {};
    this.socket = null;
    this.backoff = 500;
    this.stats = {
      connected: false, frames: 0, messages: 0, snapshots: 0, diffs: 0, events: 0, gaps: 0, reconnects: 0,
      bytes: 0, lastMessageAt: 0, since: performance.now(), views: 0, refused: 0,
    };
  }

  connect() {
    const socket = new WebSocket(typeof this.url === "function" ? this.url() : this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.backoff = 500;
      this.stats.connected = true;
      this.emit("status", { connected: true });
    });
    socket.addEventListener("message", (msg) => this.onMessage(msg.data));
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.stats.connected = false;
      this.state = null;
      this.emit("status", { connected: false });
      this.stats.reconnects += 1;
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 10000);
    });
  }

  restart() {
    const old = this.socket;
    this.socket = null;
    this.state = null;
    if (old) old.close();
    this.stats.reconnects += 1;
    this.connect();
  }

  /** Whether the server sends this page its viewport only (a large town): then it wants to hear the view. */
  get viewport() {
    return Boolean(this.state && this.state.view);
  }

  /** Tell the server the tiles shown ([x0, y0, x1, y1]) and the selected agent (null for none). */
  sendView(rect, selected) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify({ type: "view", rect: rect.map((v) => Math.round(v)), selected: selected || null }));
    this.stats.views += 1;
    return true;
  }

  onMessage(frame) {
    const s = this.stats;
    s.frames += 1;
    s.bytes += frame.length;
    for (const line of frame.split("\n")) if (line) this.onLine(line);
  }

  onLine(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    const s = this.stats;
    s.messages += 1;
    s.lastMessageAt = performance.now();
    if (msg.type === "snapshot") {
      s.snapshots += 1;
      const { state, ...header } = msg;
      this.header = header;
      this.state = state;
      this.emit("state", { kind: "snapshot", state });
    } else if (msg.type === "diff") {
      s.diffs += 1;
      if (!this.state) return;
      if (msg.tick !== this.state.tick + 1) {
        s.gaps += 1;
        this.restart();
        return;
      }
      applyPatch(this.state, msg.patch);
      this.emit("state", { kind: "diff", state: this.state });
    } else if (msg.type === "event") {
      s.events += 1;
      this.emit("event", msg);
    } else if (msg.type === "error") {
      s.refused += 1;
      this.emit("refused", msg);
    }
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
