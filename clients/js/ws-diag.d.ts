// Type declarations for ws-diag.js.
export type DiagnosisSource = "app" | "exception" | "probe" | "default" | "shutdown";
export interface DiagnosticFrame {
  code: number;
  component: string;
  message: string;
  user_id: string | null;
  timestamp: string;
  details: Record<string, unknown> | null;
  root_cause: string | null;
  suggestions: string[];
  incident_id: string;
  retryable: boolean;
  /** Suggested wait before reconnecting, ms (0 to 3 600 000); null when not retryable. */
  retry_after_ms: number | null;
  /** How the component was decided. */
  source: DiagnosisSource;
}
export interface Explanation {
  code: number;
  component: string | null;
  message: string;
  suggestions: string[];
  retryable: boolean;
  incidentId: string | null;
  frameCode: number | null;
  retryAfterMs: number | null;
  source: DiagnosisSource | null;
}
export type CodeScheme = "private" | "legacy";
export type RetryKind = "stop" | "retry" | "retry_now";
export interface RetryDecision {
  action: RetryKind;
  /** The server's hint, ms, a floor the jitter is added to; 0 when there is none; null when stopping. */
  retryAfterMs: number | null;
  why: string;
}
export const MAX_RETRY_AFTER_MS: number;
export function parseFrame(data: unknown): DiagnosticFrame | null;
export function componentForCode(code: number, scheme?: CodeScheme): string | null;
export function componentForFrameCode(code: number, scheme?: CodeScheme): string | null;
export function explain(close: { code: number; reason?: string }, frame?: DiagnosticFrame | null, scheme?: CodeScheme): Explanation;
export function watch(ws: WebSocket, onExplained: (result: Explanation) => void, scheme?: CodeScheme): void;
/**
 * The shared retry table (ws_diag.retry.retry_action). A frame always decides; without one, ws_diag's own codes
 * (1000-1015, 4001-4014) follow ws_diag's meaning, 4400-4599 the HTTP status + 4000 convention (Litestar, graphql-ws:
 * 4500-4599, 4429, 4408 retry with backoff, other 44xx stop), and any other code stops.
 */
export function retryAction(code: number | null, frame?: DiagnosticFrame | null, scheme?: CodeScheme): RetryDecision;
/**
 * Milliseconds before reconnect number `attempt` (0-based): "retry": retryAfterMs + full jitter between minDelayMs and
 * min(maxDelayMs, minDelayMs * 2 ** (attempt + 1)); "retry_now": retryAfterMs + random * minDelayMs. retryAfterMs is
 * clamped to 0..MAX_RETRY_AFTER_MS, so the wait is below MAX_RETRY_AFTER_MS + max(minDelayMs, maxDelayMs).
 * Throws a RangeError for "stop".
 */
export function retryDelayMs(
  decision: RetryDecision, attempt: number, random: number, delays?: { minDelayMs?: number; maxDelayMs?: number },
): number;

export interface ConnectOptions {
  protocols?: string | string[];
  scheme?: CodeScheme;
  /** First backoff and the jitter window after a 1012 restart, ms (500). */
  minDelayMs?: number;
  /** Backoff cap, ms (30000); the backoff is added to a server's retry_after_ms (up to one hour). */
  maxDelayMs?: number;
  /** Reconnects in a row before giving up (10; Infinity for no limit). */
  maxAttempts?: number;
  /** A connection open this long resets the attempt count, ms (5000). */
  resetAfterMs?: number;
  /** A handshake that takes longer is dropped and retried, ms (10000). */
  openTimeoutMs?: number;
  /** Jitter source, [0, 1) (Math.random). */
  random?: () => number;
}
export interface ConnectEvents {
  connecting: CustomEvent<{ attempt: number; url: string }>;
  open: CustomEvent<{ attempt: number }>;
  message: CustomEvent<{ data: unknown }>;
  close: CustomEvent<{ explanation: Explanation }>;
  diagnosis: CustomEvent<{ explanation: Explanation; frame: DiagnosticFrame }>;
  reconnecting: CustomEvent<{ delayMs: number; attempt: number; action: RetryDecision; explanation: Explanation }>;
  giveup: CustomEvent<{ action: RetryDecision; explanation: Explanation }>;
}
export interface ReconnectingSocket extends EventTarget {
  readonly socket: WebSocket | null;
  readonly state: "connecting" | "open" | "waiting" | "stopped";
  readonly attempt: number;
  /** The explanation of the latest close; null while a connection is open (reset on each "open"). */
  readonly last: Explanation | null;
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void;
  /** Stop everything: timers, the socket, further reconnects. */
  close(code?: number, reason?: string): void;
  /** Start again (after a sign-in, with a new URL if given), attempt count reset. */
  reconnect(url?: string): void;
  addEventListener<K extends keyof ConnectEvents>(type: K, listener: (event: ConnectEvents[K]) => void): void;
}
export function connect(url: string, options?: ConnectOptions): ReconnectingSocket;
