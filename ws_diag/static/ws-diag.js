// ws-diag.js: explain why a WebSocket closed, from its CloseEvent and ws_diag's error frame.
// Dependency-free ES module. Usage:
//   import { watch } from "/ws-diag.js";
//   const ws = new WebSocket(url);
//   watch(ws, (result) => console.log(result.component, result.message, result.incidentId));

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
 * Explain a close: {code, component, message, suggestions, retryable, incidentId}.
 * `close` is a CloseEvent (or {code, reason}); `frame` the last parsed error frame or null.
 * Without a frame the component comes from the close code in `scheme`; 1004/1005/1006/1015 never name one.
 */
export function explain(close, frame = null, scheme = "private") {
  const code = close.code;
  if (frame) {
    return {
      code, component: frame.component, message: frame.message, suggestions: frame.suggestions ?? [],
      retryable: Boolean(frame.retryable), incidentId: frame.incident_id ?? null, frameCode: frame.code,
    };
  }
  if (LOCAL_ONLY.has(code)) {
    const message = code === 1006 ? "Connection lost without a close frame" : `Closed without a status code (${code})`;
    return { code, component: null, message, suggestions: [], retryable: true, incidentId: null, frameCode: null };
  }
  const component = componentForCode(code, scheme);
  if (component) {
    return { code, component, message: close.reason || `${component} failure`, suggestions: [],
             retryable: RETRYABLE.has(component), incidentId: null, frameCode: null };
  }
  const normal = code === 1000 || code === 1001;
  const message = close.reason || (normal ? "Closed normally" : `Closed with ${code}`);
  return { code, component: null, message, suggestions: [], retryable: !normal, incidentId: null, frameCode: null };
}

/** Track `ws`'s last error frame and call `onExplained(result)` when it closes. */
export function watch(ws, onExplained, scheme = "private") {
  let last = null;
  ws.addEventListener("message", (event) => { const frame = parseFrame(event.data); if (frame) last = frame; });
  ws.addEventListener("close", (event) => onExplained(explain(event, last, scheme)));
}
