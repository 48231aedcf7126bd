// ws-diag.js: explain why a WebSocket closed, from its CloseEvent and ws_diag's error frame,
// and reconnect the way the server suggests. Dependency-free ES module: the npm package ws-diag
// (clients/js in the ws_diag repo; the Python package serves this same file to its demo). Usage:
//   import { watch, connect } from "ws-diag";  // or from its URL: "/ws-diag.js"
//   const ws = new WebSocket(url);
//   watch(ws, (result) => console.log(result.component, result.message, result.incidentId));
//   const conn = connect(url);  // reconnects after retry_after_ms + backoff; stops when not retryable
//   conn.addEventListener("reconnecting", (e) => console.log(`reconnecting in ${e.detail.delayMs} ms`));

// Close codes as they arrive on the wire, per scheme. In the legacy scheme 1004-1006 cannot be
// sent (RFC 6455), so those components close with their private codes 4004-4006. Servers that
// accept only 1000 and 3000-4999 from an app (daphne) get code + 3000 instead: 1011 -> 4011.
const PRIVATE = {
  4002: "Authentication", 4003: "Factory", 4004: "Message Handler", 4005: "Database",
  4006: "Dependencies", 4007: "Redis", 4008: "Agent Supervisor", 4009: "WebSocket Bridge",
  4010: "Integration", 1011: "Generic Internal", 4011: "Generic Internal",
};
const LEGACY_WIRE = {
  ...PRIVATE,
  1002: "Authentication", 1003: "Factory", 1007: "Redis", 1008: "Agent Supervisor",
  1009: "WebSocket Bridge", 1010: "Integration",
};
// Codes inside the JSON frame in the legacy scheme.
const LEGACY_FRAME = {
  1002: "Authentication", 1003: "Factory", 1004: "Message Handler", 1005: "Database",
  1006: "Dependencies", 1007: "Redis", 1008: "Agent Supervisor", 1009: "WebSocket Bridge",
  1010: "Integration", 1011: "Generic Internal",
};
const RETRYABLE = new Set(["Factory", "Database", "Redis", "Agent Supervisor", "WebSocket Bridge", "Integration", "Generic Internal"]);
// ws_diag's close reason: "<Component> failure (incident <16 hex>)".
const INCIDENT_IN_REASON = /\(incident ([0-9a-f]{16})\)$/;
const SOURCES = new Set(["app", "exception", "probe", "default", "shutdown"]);
/** A frame's retry_after_ms never exceeds one hour (ws_diag.retry.MAX_RETRY_AFTER_MS). */
export const MAX_RETRY_AFTER_MS = 3_600_000;
// Codes a server never sends (RFC 6455 7.4.1): a browser reports them itself (1006: no close
// frame; 1005: a close frame without a code), so they say nothing about a component, whatever
// the legacy numbering says. Same rule as the Python helper (ws_diag.client).
const LOCAL_ONLY = new Set([1004, 1005, 1006, 1015]);

/** The ws_diag error body inside a message's data, or null. */
export function parseFrame(data) {
  if (typeof data !== "string" || !data.startsWith("{")) return null;
  try {
    const frame = JSON.parse(data);
    if (frame && frame.type === "error" && frame.error && typeof frame.error.code === "number") return frame.error;
  } catch (_) { /* not JSON: an ordinary message */ }
  return null;
}

/** Name the component a close code (as a CloseEvent reports it) stands for in `scheme`, or null. */
export function componentForCode(code, scheme = "private") {
  return (scheme === "legacy" ? LEGACY_WIRE : PRIVATE)[code] ?? null;
}

/** Name the component a diagnostic frame's `code` stands for in `scheme`, or null. */
export function componentForFrameCode(code, scheme = "private") {
  return (scheme === "legacy" ? LEGACY_FRAME : PRIVATE)[code] ?? null;
}

/**
 * Explain a close: {code, component, message, suggestions, retryable, incidentId, frameCode, retryAfterMs, source}.
 * `close` is a CloseEvent (or {code, reason}); `frame` the last parsed error frame or null.
 * Without a frame the component comes from the close code in `scheme`; 1004/1005/1006/1015 never name one;
 * `retryable` follows the retry table (retryAction) and the incident id comes from ws_diag's close reason.
 */
export function explain(close, frame = null, scheme = "private") {
  const code = close.code;
  if (frame) {
    const hint = frame.retryable === true && Number.isInteger(frame.retry_after_ms)
      ? Math.max(0, Math.min(frame.retry_after_ms, MAX_RETRY_AFTER_MS)) : null;
    return {
      code, component: frame.component, message: frame.message, suggestions: frame.suggestions ?? [],
      retryable: Boolean(frame.retryable), incidentId: frame.incident_id ?? null, frameCode: frame.code,
      retryAfterMs: hint, source: SOURCES.has(frame.source) ? frame.source : null,
    };
  }
  const base = { suggestions: [], frameCode: null, retryAfterMs: null, source: null };
  if (LOCAL_ONLY.has(code)) {
    const message = code === 1006 ? "Connection lost without a close frame" : `Closed without a status code (${code})`;
    return { code, component: null, message, ...base, retryable: true, incidentId: null };
  }
  const incidentId = (close.reason ?? "").match(INCIDENT_IN_REASON)?.[1] ?? null;
  const retryable = retryAction(code, null, scheme).action !== "stop";
  const component = componentForCode(code, scheme);
  if (component) {
    return { code, component, message: close.reason || `${component} failure`, ...base, retryable, incidentId };
  }
  const normal = code === 1000 || code === 1001;
  const message = close.reason || (normal ? "Closed normally" : `Closed with ${code}`);
  return { code, component: null, message, ...base, retryable, incidentId };
}

// The retry table (same as ws_diag.retry.retry_action; both are tested on tests/retry_cases.json).
// A frame, when there is one, always decides (a custom component may use any private code).
// Without a frame, ws_diag's own codes: 1000-1015 and 4001-4014 (the built-in components 4002-4010
// and strict servers' fallbacks, code + 3000, e.g. daphne's 4011; custom components may not use
// them): 1000 and the client's own faults (1002, 1003, 1007-1010 in the private scheme) stop; 1001,
// 1011, 1013, 1014 and codes no server sends back off; 1012 comes back promptly. 4400-4599 are read
// as an HTTP status + 4000 (Litestar, graphql-ws): 4500-4599 back off, 4429 (too many requests)
// backs off ("retry later"), 4408 (timeout) retries with backoff, other 4400-4499 stop. Any other
// code (an app's own 3000-3999, 4000, 4015-4399, 4600-4999) stops.
const STOP_REGISTERED = new Set([1000, 1002, 1003, 1007, 1008, 1009, 1010]);
const BACKOFF_REGISTERED = new Set([1001, 1011, 1013, 1014, 1004, 1005, 1006, 1015]);
const RESTART = 1012;
const OWN_FIRST = 4001;
const OWN_LAST = 4014;

function httpStyleAction(code) {
  const status = code - 4000;
  if (status >= 500 && status <= 599) return { action: "retry", retryAfterMs: 0, why: `closed with ${code} (HTTP ${status} + 4000: a server error): back off` };
  if (code === 4429) return { action: "retry", retryAfterMs: 0, why: `closed with ${code} (HTTP 429 + 4000: too many requests): retry later` };
  if (code === 4408) return { action: "retry", retryAfterMs: 0, why: `closed with ${code} (HTTP 408 + 4000: timed out): retry` };
  if (status >= 400 && status <= 499) return { action: "stop", retryAfterMs: null, why: `closed with ${code} (HTTP ${status} + 4000: a refused request): reconnecting would repeat it` };
  return { action: "stop", retryAfterMs: null, why: `closed with ${code}, which ws_diag does not know` };
}

function frameHint(frame) {
  const value = frame.retry_after_ms;
  if (typeof value !== "number" || !(value >= 0)) return 0;
  return Math.trunc(Math.min(value, MAX_RETRY_AFTER_MS));
}

/**
 * What to do after a close: {action: "stop" | "retry" | "retry_now", retryAfterMs, why}.
 * `code` is the close code (null when the connection failed without one); `frame` the error body or null.
 */
export function retryAction(code, frame = null, scheme = "private") {
  const restart = code === RESTART || code === RESTART + 3000;
  if (frame) {
    if (frame.retryable !== true) return { action: "stop", retryAfterMs: null, why: `${frame.component} failure is not retryable` };
    const hint = frameHint(frame);
    if (restart) return { action: "retry_now", retryAfterMs: hint, why: "service restart" };
    return { action: "retry", retryAfterMs: hint, why: `${frame.component} failure, retry after ${hint} ms` };
  }
  if (code === null || code === undefined || LOCAL_ONLY.has(code)) {
    return { action: "retry", retryAfterMs: 0, why: "connection lost without a close frame: back off" };
  }
  if (restart) return { action: "retry_now", retryAfterMs: 0, why: "service restart" };
  const component = componentForCode(code, scheme);
  if (component) {
    return RETRYABLE.has(component)
      ? { action: "retry", retryAfterMs: 0, why: `${component} failure without a frame: back off` }
      : { action: "stop", retryAfterMs: null, why: `${component} failure is not retryable` };
  }
  const registered = code >= OWN_FIRST && code <= OWN_LAST ? code - 3000 : code;
  if (BACKOFF_REGISTERED.has(registered)) return { action: "retry", retryAfterMs: 0, why: `closed with ${code}: back off` };
  if (STOP_REGISTERED.has(registered)) return { action: "stop", retryAfterMs: null, why: `closed with ${code}: reconnecting would repeat it` };
  return httpStyleAction(code);
}

/**
 * Milliseconds to wait before reconnect number `attempt` (0-based). The server's retryAfterMs is a
 * floor and the jitter is added on top (taking the larger of the two would bring every client
 * told the same hint back in the same millisecond): for "retry", retryAfterMs + full jitter
 * between minDelayMs and min(maxDelayMs, minDelayMs * 2 ** (attempt + 1)); for "retry_now",
 * retryAfterMs + random * minDelayMs. `random` is in [0, 1). retryAfterMs is clamped to
 * 0..MAX_RETRY_AFTER_MS first, so every wait is below MAX_RETRY_AFTER_MS + max(minDelayMs, maxDelayMs).
 * Same numbers as ws_diag.client.retry_delay_ms (tests/retry_cases.json).
 */
export function retryDelayMs(decision, attempt, random, { minDelayMs = 500, maxDelayMs = 30000 } = {}) {
  const hint = Math.max(0, Math.min(decision.retryAfterMs ?? 0, MAX_RETRY_AFTER_MS));
  if (decision.action === "stop") throw new RangeError("a stop action has no delay");
  if (decision.action === "retry_now") return Math.floor(hint + random * minDelayMs);
  const ceiling = Math.max(minDelayMs, Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(attempt + 1, 40)));
  return Math.floor(hint + minDelayMs + random * (ceiling - minDelayMs));
}

/** Track `ws`'s last error frame and call `onExplained(result)` when it closes. */
export function watch(ws, onExplained, scheme = "private") {
  let last = null;
  ws.addEventListener("message", (event) => { const frame = parseFrame(event.data); if (frame) last = frame; });
  ws.addEventListener("close", (event) => onExplained(explain(event, last, scheme)));
}

/**
 * A WebSocket that comes back by itself, as the retry table says. Returns an EventTarget with
 * send(data), close(code, reason), reconnect(url), and `socket`, `state` ("connecting" | "open" |
 * "waiting" | "stopped"), `attempt`, `last` (the explanation of the latest close; null while a connection
 * is open: reset on each "open", so it always describes the current state). Events (CustomEvent, see
 * `detail`): "connecting" {attempt, url}, "open" {attempt}, "message" {data}, "close"
 * {explanation}, "diagnosis" {explanation, frame}, "reconnecting" {delayMs, attempt, action,
 * explanation}, "giveup" {action, explanation} (not retryable, e.g. Authentication: sign in, then
 * call reconnect(); or attempts exhausted).
 * Options: protocols, scheme ("private"), minDelayMs (500), maxDelayMs (30000), maxAttempts (10,
 * reconnects in a row; Infinity for no limit), resetAfterMs (5000: a connection open this long
 * resets the count), openTimeoutMs (10000: a handshake that takes longer is dropped and retried),
 * random (Math.random).
 */
export function connect(url, options = {}) {
  const opts = {
    protocols: undefined, scheme: "private", minDelayMs: 500, maxDelayMs: 30000, maxAttempts: 10,
    resetAfterMs: 5000, openTimeoutMs: 10000, random: Math.random, ...options,
  };
  for (const name of ["minDelayMs", "maxDelayMs", "resetAfterMs", "openTimeoutMs"]) {
    if (!(opts[name] > 0 && Number.isFinite(opts[name]))) throw new RangeError(`connect: ${name} must be a positive number of ms, got ${opts[name]}`);
  }
  if (opts.maxDelayMs < opts.minDelayMs) throw new RangeError(`connect: maxDelayMs (${opts.maxDelayMs}) is below minDelayMs (${opts.minDelayMs})`);
  if (!(opts.maxAttempts >= 1)) throw new RangeError(`connect: maxAttempts must be at least 1, got ${opts.maxAttempts}`);
  const target = new EventTarget();
  const emit = (type, detail) => target.dispatchEvent(new CustomEvent(type, { detail }));
  let timer = null;
  let openTimer = null;
  let stopped = false;
  target.socket = null;
  target.state = "connecting";
  target.attempt = 0;
  target.last = null;

  function open() {
    timer = null;
    if (stopped) return;
    target.state = "connecting";
    emit("connecting", { attempt: target.attempt, url });
    const ws = new WebSocket(url, opts.protocols);
    target.socket = ws;
    let frame = null;
    let openedAt = null;
    openTimer = setTimeout(() => ws.close(), opts.openTimeoutMs);  // a hung handshake ends as 1006
    ws.addEventListener("open", () => {
      clearTimeout(openTimer);
      openedAt = performance.now();
      target.state = "open";
      target.last = null;  // connected again: the previous close no longer describes the state
      emit("open", { attempt: target.attempt });
    });
    ws.addEventListener("message", (event) => {
      const parsed = parseFrame(event.data);
      if (parsed) frame = parsed;
      emit("message", { data: event.data });
    });
    ws.addEventListener("close", (event) => {
      clearTimeout(openTimer);
      if (target.socket !== ws) return;
      target.socket = null;
      const explanation = explain(event, frame, opts.scheme);
      target.last = explanation;
      emit("close", { explanation });
      if (frame) emit("diagnosis", { explanation, frame });
      if (stopped) return;
      if (openedAt !== null && performance.now() - openedAt >= opts.resetAfterMs) target.attempt = 0;
      let decision = retryAction(event.code, frame, opts.scheme);
      if (decision.action !== "stop" && target.attempt >= opts.maxAttempts) {
        decision = { action: "stop", retryAfterMs: null, why: `gave up after ${target.attempt} reconnects in a row` };
      }
      if (decision.action === "stop") {
        target.state = "stopped";
        emit("giveup", { action: decision, explanation });
        return;
      }
      const delayMs = retryDelayMs(decision, target.attempt, opts.random(), opts);
      target.attempt += 1;
      target.state = "waiting";
      emit("reconnecting", { delayMs, attempt: target.attempt, action: decision, explanation });
      timer = setTimeout(open, delayMs);  // bounded: below one hour + maxDelayMs
    });
  }

  target.send = (data) => {
    if (!target.socket || target.socket.readyState !== WebSocket.OPEN) throw new Error("ws-diag connect: not open");
    target.socket.send(data);
  };
  target.close = (code = 1000, reason = "") => {
    stopped = true;
    target.state = "stopped";
    clearTimeout(timer);
    clearTimeout(openTimer);
    timer = null;
    if (target.socket) target.socket.close(code, reason);
  };
  target.reconnect = (newUrl = url) => {
    target.close();
    url = newUrl;
    stopped = false;
    target.attempt = 0;
    target.socket = null;
    queueMicrotask(open);
  };
  queueMicrotask(open);  // after the caller has added its listeners: it sees "connecting" too
  return target;
}
