// The admin console panel: a pasted token (kept in memory only), command completion from `help`, clear errors.

import { el, $ } from "./dom.js";

/** `key=value key2=[1,2] name="two words"` or a JSON object -> an args object. */
export function parseArgs(text) {
  const source = text.trim();
  if (!source) return {};
  if (source.startsWith("{")) return JSON.parse(source);
  const args = {};
  const pattern = /([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\[[^\]]*\]|\{[^}]*\}|\S+)/g;
  let match;
  let consumed = "";
  while ((match = pattern.exec(source)) !== null) {
    consumed += match[0];
    args[match[1]] = typed(match[2]);
  }
  if (consumed.replace(/\s/g, "").length !== source.replace(/\s/g, "").length) {
    throw new Error("arguments are key=value pairs separated by spaces (or one JSON object)");
  }
  return args;
}

function typed(raw) {
  if (/^(true|false|null)$/.test(raw) || /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(raw) || /^["[{]/.test(raw)) {
    try {
      return JSON.parse(raw);
    } catch {
      return raw;
    }
  }
  return raw;
}

/** Send one command; resolves with {status, body} (never rejects on HTTP errors). */
export async function sendCommand(token, cmd, args = {}) {
  const response = await fetch("api/console", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ cmd, args, cmd_id: crypto.randomUUID ? crypto.randomUUID() : String(Math.random()) }),
    cache: "no-store",
    credentials: "omit",
  });
  let body;
  try {
    body = await response.json();
  } catch {
    body = { ok: false, code: `HTTP_${response.status}`, message: response.statusText };
  }
  return { status: response.status, body };
}

export class ConsolePanel {
  constructor() {
    this.token = null; // memory only: never written to storage, cookies or the URL
    this.role = null;
    this.commands = [];
    this.schemas = new Map();
    this.tokenForm = $("token-form");
    this.tokenInput = $("token-input");
    this.tokenStatus = $("token-status");
    this.forget = $("token-forget");
    this.form = $("command-form");
    this.cmdInput = $("command-input");
    this.argsInput = $("args-input");
    this.help = $("command-help");
    this.error = $("console-error");
    this.output = $("console-output");
    this.tokenForm.addEventListener("submit", (e) => {
      e.preventDefault();
      this.useToken(this.tokenInput.value.trim());
    });
    this.forget.addEventListener("click", () => this.signOut("Token forgotten."));
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.runFromForm();
    });
    this.cmdInput.addEventListener("change", () => this.describe(this.cmdInput.value.trim()));
    this.cmdInput.addEventListener("input", () => {
      const name = this.cmdInput.value.trim();
      if (this.commands.some((c) => c.name === name)) this.describe(name);
    });
  }

  async useToken(token) {
    this.clearError();
    if (!token) {
      this.showError("Paste a token first (townlet token issue --role admin --principal NAME).");
      return;
    }
    let answer;
    try {
      answer = await sendCommand(token, "help");
    } catch (err) {
      this.showError(`Could not reach the server: ${err.message}`);
      return;
    }
    if (!answer.body.ok) {
      this.showError(`${answer.body.code}: ${answer.body.message}`);
      return;
    }
    this.token = token;
    this.tokenInput.value = "";
    this.role = answer.body.data.role;
    this.commands = answer.body.data.commands;
    $("command-list").replaceChildren(...this.commands.map((c) => el("option", { value: c.name, label: `${c.name} — ${c.summary}` })));
    this.tokenStatus.textContent = `Signed in with a ${this.role} token: ${this.commands.length} commands available.`;
    this.tokenStatus.dataset.role = this.role;
    this.forget.hidden = false;
    this.form.hidden = false;
    this.dispatch("role", { role: this.role });
  }

  signOut(message) {
    this.token = null;
    this.role = null;
    this.commands = [];
    this.form.hidden = true;
    this.forget.hidden = true;
    this.tokenStatus.textContent = message;
    delete this.tokenStatus.dataset.role;
    this.dispatch("role", { role: null });
  }

  async describe(name) {
    if (!this.token || !name) return;
    if (!this.schemas.has(name)) {
      const answer = await sendCommand(this.token, "help", { command: name });
      if (!answer.body.ok) return;
      this.schemas.set(name, answer.body.data);
    }
    const info = this.schemas.get(name);
    const props = (info.args && info.args.properties) || {};
    const required = new Set((info.args && info.args.required) || []);
    const names = Object.keys(props);
    $("arg-list").replaceChildren(...names.map((n) => el("option", { value: `${n}=` })));
    const list = names.map((n) => (required.has(n) ? `${n}*` : n)).join(", ");
    const note = required.size ? " (* required)" : "";
    this.help.textContent = `${info.summary}${names.length ? ` Arguments: ${list}${note}.` : " No arguments."}${info.role === "admin" ? " Admin only." : ""}`;
  }

  async runFromForm() {
    const cmd = this.cmdInput.value.trim();
    let args;
    try {
      args = parseArgs(this.argsInput.value);
    } catch (err) {
      this.showError(`E_INVALID_ARG: ${err.message}`);
      return;
    }
    await this.run(cmd, args);
  }

  /** Run a command with the current token; shows the result or a clear error. */
  async run(cmd, args = {}) {
    this.clearError();
    if (!this.token) {
      this.showError("Paste a token in the admin console first.");
      return null;
    }
    if (!cmd) {
      this.showError("Choose a command (try help).");
      return null;
    }
    let answer;
    try {
      answer = await sendCommand(this.token, cmd, args);
    } catch (err) {
      this.showError(`Could not reach the server: ${err.message}`);
      return null;
    }
    const body = answer.body;
    this.output.hidden = false;
    this.output.textContent = JSON.stringify(body, null, 2);
    if (!body.ok) {
      this.showError(`${body.code}: ${body.message}`);
      if (body.code === "E_UNAUTHENTICATED") this.signOut("The token was refused (expired or revoked); paste a new one.");
    }
    this.dispatch("result", { cmd, body, status: answer.status });
    return body;
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = false;
  }

  clearError() {
    this.error.hidden = true;
    this.error.textContent = "";
  }

  dispatch(type, detail) {
    document.dispatchEvent(new CustomEvent(`console:${type}`, { detail }));
  }
}
