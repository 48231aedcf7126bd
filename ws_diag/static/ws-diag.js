// ws-diag.js: explain why a WebSocket closed, from its CloseEvent and ws_diag's error frame.
// Dependency-free ES module. Usage:
//   import { watch } from "/ws-diag.js";
//   const ws = new WebSocket(url);
//   watch(ws, (result) => console.log(result.component, result.message, result.incidentId));

const PRIVATE = {
  4002: "Authentication", 4003: "Factory", 4004: "Message Handler", 4005: "Database",
  4006: "Dependencies", 4007: "Redis", 4008: "Agent Supervisor", 4009: "WebSocket Bridge",
  4010: "Integration", 1011: "Generic Internal",
};
const LEGACY = {
  1002: "Authentication", 1003: "Factory", 1004: "Message Handler", 1005: "Database",
  1006: "Dependencies", 1007: "Redis", 1008: "Agent Supervisor", 1009: "WebSocket Bridge",
  1010: "Integration", 1011: "Generic Internal",
};
const RETRYABLE = new Set(["Factory", "Database", "Redis", "Agent Supervisor", "WebSocket Bridge", "Integration", "Generic Internal"]);

/** The ws_diag error body inside a message's data, or null. */
export function parseFrame(data) {
  if (typeof data !== "string" || !data.startsWith("{")) return null;
  try {
    const frame = JSON.parse(data);
    if (frame && frame.type === "error" && frame.error && typeof frame.error.code === "number") return frame.error;
  } catch (_) { /* not JSON: an ordinary message */ }
  return null;
}

/** Name the component for a close code, knowing both schemes ("private" first). */
export function componentForCode(code, scheme) {
  if (scheme === "legacy") return LEGACY[code] ?? PRIVATE[code] ?? null;
  return PRIVATE[code] ?? LEGACY[code] ?? null;
}

/**
 * Explain a close: {code, component, message, suggestions, retryable, incidentId}.
 * `close` is a CloseEvent (or {code, reason}); `frame` the last parsed error frame or null.
 */
export function explain(close, frame = null, scheme = "private") {
  const code = close.code;
  if (frame) {
    return {
      code, component: frame.component, message: frame.message, suggestions: frame.suggestions ?? [],
      retryable: Boolean(frame.retryable), incidentId: frame.incident_id ?? null, frameCode: frame.code,
    };
  }
  const component = componentForCode(code, scheme);
  if (component) {
    return { code, component, message: close.reason || `${component} failure`, suggestions: [],
             retryable: RETRYABLE.has(component), incidentId: null, frameCode: null };
  }
  const normal = code === 1000 || code === 1001;
  const message = code === 1006 ? "Connection lost without a close frame" : (close.reason || (normal ? "Closed normally" : `Closed with ${code}`));
  return { code, component: null, message, suggestions: [], retryable: !normal, incidentId: null, frameCode: null };
}

/** Track `ws`'s last error frame and call `onExplained(result)` when it closes. */
export function watch(ws, onExplained, scheme = "private") {
  let last = null;
  ws.addEventListener("message", (event) => { const frame = parseFrame(event.data); if (frame) last = frame; });
  ws.addEventListener("close", (event) => onExplained(explain(event, last, scheme)));
}
