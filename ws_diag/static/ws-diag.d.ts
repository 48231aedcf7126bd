// Type declarations for ws-diag.js.
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
}
export interface Explanation {
  code: number;
  component: string | null;
  message: string;
  suggestions: string[];
  retryable: boolean;
  incidentId: string | null;
  frameCode: number | null;
}
export type CodeScheme = "private" | "legacy";
export function parseFrame(data: unknown): DiagnosticFrame | null;
export function componentForCode(code: number, scheme?: CodeScheme): string | null;
export function componentForFrameCode(code: number, scheme?: CodeScheme): string | null;
export function explain(close: { code: number; reason?: string }, frame?: DiagnosticFrame | null, scheme?: CodeScheme): Explanation;
export function watch(ws: WebSocket, onExplained: (result: Explanation) => void, scheme?: CodeScheme): void;
