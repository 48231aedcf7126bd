// The shared retry table (tests/retry_cases.json in the ws_diag repo): the Python client
// (tests/test_retry.py) and Chromium (tests/test_browser_reconnect.py) are tested on the same cases.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import test from "node:test";

import { MAX_RETRY_AFTER_MS, retryAction, retryDelayMs } from "ws-diag";

const CASES = JSON.parse(readFileSync(new URL("../../../tests/retry_cases.json", import.meta.url), "utf-8"));

test("the table has cases of both kinds", () => {
  assert.ok(CASES.actions.length > 50);
  assert.ok(CASES.delays.length > 10);
});

for (const c of CASES.actions) {
  test(`retryAction(${c.code}, ${c.frame ? "frame" : "null"}, ${c.scheme}) is ${c.expect.join(" ")}`, () => {
    const decision = retryAction(c.code, c.frame, c.scheme);
    assert.deepEqual([decision.action, decision.retryAfterMs], c.expect);
    assert.ok(decision.why.length > 0);
    assert.ok(decision.why.includes(c.why_has ?? ""), `${decision.why} lacks ${c.why_has}`);
  });
}

for (const c of CASES.delays) {
  test(`retryDelayMs(${c.action.join(" ")}, attempt ${c.attempt}, random ${c.random}) is ${c.expect_ms} ms`, () => {
    const [action, retryAfterMs] = c.action;
    const got = retryDelayMs({ action, retryAfterMs, why: "" }, c.attempt, c.random, { minDelayMs: c.min_ms, maxDelayMs: c.max_ms });
    assert.equal(got, c.expect_ms);
  });
}

test("the server's hint is a floor the jitter is added to, and every wait is bounded", () => {
  const firstWave = [0, 0.25, 0.5, 0.75, 0.999].map((r) => retryDelayMs({ action: "retry", retryAfterMs: 1000 }, 0, r));
  assert.deepEqual(firstWave, [1500, 1625, 1750, 1875, 1999]);
  const worst = retryDelayMs({ action: "retry", retryAfterMs: Number.MAX_SAFE_INTEGER }, 1000, 0.999999);
  assert.ok(worst < MAX_RETRY_AFTER_MS + 30000, `${worst}`);
});

test("a stop has no delay", () => {
  assert.throws(() => retryDelayMs({ action: "stop", retryAfterMs: null }, 0, 0.5), RangeError);
});
