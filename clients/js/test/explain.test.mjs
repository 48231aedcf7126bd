// parseFrame, explain and the code maps on sample frames shaped like the ones ws_diag sends
// (ws_diag/schemas/frame.schema.json); real ones arrive in connect.test.mjs.
import assert from "node:assert/strict";
import test from "node:test";

import { MAX_RETRY_AFTER_MS, componentForCode, componentForFrameCode, explain, parseFrame, watch } from "ws-diag";

const DATABASE = {
  code: 4005, component: "Database", message: "Database failure", user_id: null, timestamp: "2026-12-06T10:00:00+00:00",
  details: null, root_cause: null, suggestions: ["Check the database"], incident_id: "0123456789abcdef",
  retryable: true, retry_after_ms: 1500, source: "probe",
};
const AUTH = { ...DATABASE, code: 4002, component: "Authentication", message: "Token expired", retryable: false, retry_after_ms: null, source: "app" };
const text = (error) => JSON.stringify({ type: "error", error });

test("parseFrame returns the error body of a ws_diag frame", () => {
  assert.deepEqual(parseFrame(text(DATABASE)), DATABASE);
  assert.deepEqual(parseFrame(text(AUTH)), AUTH);
});

test("parseFrame ignores every other message", () => {
  for (const data of [
    "hello", "", "{not json", JSON.stringify({ type: "chat", error: DATABASE }), JSON.stringify({ type: "error" }),
    text({ ...DATABASE, code: "4005" }), JSON.stringify([1, 2]), "null", new ArrayBuffer(8), null, undefined, 42,
  ]) {
    assert.equal(parseFrame(data), null, String(data));
  }
});

test("explain with a frame takes everything from the frame", () => {
  const r = explain({ code: 4005, reason: "Database failure (incident 0123456789abcdef)" }, DATABASE);
  assert.deepEqual(r, {
    code: 4005, component: "Database", message: "Database failure", suggestions: ["Check the database"],
    retryable: true, incidentId: "0123456789abcdef", frameCode: 4005, retryAfterMs: 1500, source: "probe",
  });
  const auth = explain({ code: 4002, reason: "" }, AUTH);
  assert.equal(auth.retryable, false);
  assert.equal(auth.retryAfterMs, null);
});

test("explain clamps the frame's retry_after_ms and drops an unknown source", () => {
  const r = explain({ code: 4005 }, { ...DATABASE, retry_after_ms: 99_999_999, source: "guess" });
  assert.equal(r.retryAfterMs, MAX_RETRY_AFTER_MS);
  assert.equal(r.source, null);
  assert.equal(explain({ code: 4005 }, { ...DATABASE, retry_after_ms: -3 }).retryAfterMs, 0);
});

test("explain without a frame names the component from the close code and reads the incident from the reason", () => {
  const r = explain({ code: 4007, reason: "Redis failure (incident fedcba9876543210)" });
  assert.deepEqual([r.component, r.retryable, r.incidentId, r.frameCode], ["Redis", true, "fedcba9876543210", null]);
  assert.deepEqual([explain({ code: 4002, reason: "" }).component, explain({ code: 4002, reason: "" }).retryable], ["Authentication", false]);
  assert.equal(explain({ code: 1000, reason: "" }).message, "Closed normally");
  assert.equal(explain({ code: 3000, reason: "" }).retryable, false);
});

test("codes no server sends name no component, whatever the scheme", () => {
  for (const code of [1005, 1006, 1015]) {
    for (const scheme of ["private", "legacy"]) {
      const r = explain({ code, reason: "" }, null, scheme);
      assert.deepEqual([r.component, r.retryable], [null, true], `${code} ${scheme}`);
    }
  }
});

test("the legacy scheme maps its wire and frame codes", () => {
  assert.equal(componentForCode(1008, "legacy"), "Agent Supervisor");
  assert.equal(componentForCode(1008, "private"), null);
  assert.equal(componentForCode(4011), "Generic Internal");
  assert.equal(componentForFrameCode(1005, "legacy"), "Database");
  assert.equal(componentForFrameCode(1005), null);
});

test("watch pairs a socket's close with its last frame", () => {
  const ws = new EventTarget();
  const seen = [];
  watch(ws, (r) => seen.push(r));
  ws.dispatchEvent(Object.assign(new Event("message"), { data: text(DATABASE) }));
  ws.dispatchEvent(Object.assign(new Event("message"), { data: "an ordinary message" }));
  ws.dispatchEvent(Object.assign(new Event("close"), { code: 4005, reason: "Database failure (incident 0123456789abcdef)" }));
  assert.equal(seen.length, 1);
  assert.deepEqual([seen[0].component, seen[0].frameCode, seen[0].retryAfterMs], ["Database", 4005, 1500]);
});
