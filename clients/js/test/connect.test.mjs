// connect() against a real ws_diag server: WS_DIAG_TEST_URL names its websocket endpoint
// (tests/test_js_package.py in the ws_diag repo starts one and sets it). The server's app:
// ?auth=bad fails authentication; ?fail=N&key=K fails the first N connections of K with a Redis
// error (then says "hello"); ?restart=1&key=K closes the first connection of K with 1012.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import test from "node:test";

import { connect } from "ws-diag";

const BASE = process.env.WS_DIAG_TEST_URL;
const skip = !BASE
  ? "WS_DIAG_TEST_URL is not set (tests/test_js_package.py sets it to a ws_diag server)"
  : typeof WebSocket === "undefined"
    ? "no global WebSocket (Node 22+; on Node 20.10+ set NODE_OPTIONS=--experimental-websocket)"
    : false;
const BOUND = { timeout: 15000 };
const FAST = { minDelayMs: 20, maxDelayMs: 100, maxAttempts: 5 };
const CLOCK_SLACK_MS = 2;  // a timer may fire up to a millisecond early against performance.now()

/** connect(url, options), logging every event with its time; resolves when `until(type, detail)` is true. */
function run(url, options, until) {
  const events = [];
  const conn = connect(url, options);
  const done = new Promise((resolve) => {
    for (const type of ["connecting", "open", "message", "close", "diagnosis", "reconnecting", "giveup"]) {
      conn.addEventListener(type, (e) => {
        events.push({ type, t: performance.now(), detail: e.detail, last: conn.last, state: conn.state });
        if (until(type, e.detail)) resolve();
      });
    }
  });
  return { conn, events, done };
}

test("a failure that is not retryable gives up with the server's explanation", { skip, ...BOUND }, async () => {
  const { conn, events, done } = run(`${BASE}?auth=bad`, FAST, (type) => type === "giveup");
  await done;
  assert.deepEqual(events.map((e) => e.type), ["connecting", "open", "message", "close", "diagnosis", "giveup"]);
  const { explanation, action } = events.at(-1).detail;
  assert.deepEqual([explanation.code, explanation.component, explanation.retryable], [4002, "Authentication", false]);
  assert.match(explanation.incidentId, /^[0-9a-f]{16}$/);
  assert.equal(action.action, "stop");
  assert.equal(conn.state, "stopped");
  assert.deepEqual(conn.last, explanation);
});

test("it waits retry_after_ms plus the jitter after each failure, then is back", { skip, ...BOUND }, async () => {
  const { conn, events, done } = run(`${BASE}?fail=2&key=${randomUUID()}`, FAST, (type, d) => type === "message" && d.data === "hello");
  await done;
  conn.close();
  const diagnoses = events.filter((e) => e.type === "diagnosis");
  assert.equal(diagnoses.length, 2);
  for (const { detail } of diagnoses) {
    assert.deepEqual([detail.frame.code, detail.frame.component, detail.frame.source], [4007, "Redis", "app"]);
    assert.equal(detail.explanation.incidentId, detail.frame.incident_id);
  }
  const waits = events.filter((e) => e.type === "reconnecting");
  assert.deepEqual(waits.map((e) => e.detail.attempt), [1, 2]);
  for (const wait of waits) {
    const hint = wait.detail.explanation.retryAfterMs;
    assert.ok(hint > 0, "the server's frame carries a retry_after_ms");
    assert.equal(wait.detail.action.action, "retry");
    assert.ok(wait.detail.delayMs >= hint + FAST.minDelayMs, `${wait.detail.delayMs} < ${hint} + ${FAST.minDelayMs}`);
    assert.ok(wait.detail.delayMs < hint + FAST.maxDelayMs, `${wait.detail.delayMs} >= ${hint} + ${FAST.maxDelayMs}`);
    const again = events.find((e) => e.type === "connecting" && e.t > wait.t);
    assert.ok(again.t - wait.t >= wait.detail.delayMs - CLOCK_SLACK_MS, "connected again before the wait was over");
    assert.deepEqual(wait.last.component, "Redis");
  }
  const opened = events.filter((e) => e.type === "open").at(-1);
  assert.equal(opened.last, null, "conn.last is reset when connected again");
  assert.equal(opened.state, "open");
});

test("a 1012 Service Restart comes back promptly, within the jitter window", { skip, ...BOUND }, async () => {
  const { conn, events, done } = run(`${BASE}?restart=1&key=${randomUUID()}`, FAST, (type, d) => type === "message" && d.data === "hello");
  await done;
  conn.close();
  const waits = events.filter((e) => e.type === "reconnecting");
  assert.equal(waits.length, 1);
  assert.equal(waits[0].detail.action.action, "retry_now");
  assert.equal(waits[0].detail.explanation.code, 1012);
  assert.ok(waits[0].detail.delayMs < FAST.minDelayMs, `${waits[0].detail.delayMs}`);
});
