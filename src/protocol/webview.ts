// Messages between the extension host and its webviews (the run panel and the Compare panel), typed once
// for both sides. The host owns the truth (the run's events); a panel only draws what it is sent and asks
// the host to act (cancel, reveal). A panel rebuilt after a reload or after being hidden asks with `ready`
// and gets a whole snapshot again, so no panel state has to survive on its own.

import type { Event } from './events';
import type { RunStatus } from './progress';
import type { PointResult, SweepIndex } from './sweep';

/** What the host knows of one run, enough to draw it from scratch. */
export interface RunSnapshot {
  /** Stable id: the run's folder under the extension's storage, or a finished run's output folder. */
  id: string;
  /** Short title, e.g. "stories260K · apt 2:4". */
  label: string;
  /** Process-level status: `interrupted` when the backend ended without a terminal event. */
  status: RunStatus;
  /** Every event so far, in order. */
  events: Event[];
  /** Host clock (ms since epoch) at which each event arrived, parallel to `events` (for the ETA). */
  times: number[];
  /** Why the run was interrupted (exit code or signal, last stderr line), when it was. */
  interruption?: string;
}

/** Host → panel. */
export type HostMessage =
  /** Draw this run from scratch (first open, `ready`, restore). */
  | { type: 'run.reset'; run: RunSnapshot }
  /** One more event of the run the panel shows. */
  | { type: 'run.event'; runId: string; event: Event; time: number }
  /** The backend process ended without a terminal event. */
  | { type: 'run.interrupted'; runId: string; message: string }
  /** Draw these finished runs overlaid (the Compare panel). */
  | { type: 'compare.reset'; runs: RunSnapshot[] }
  /** Draw this sweep from scratch (the Sweep panel: sent again at every change of the sweep's folder). */
  | { type: 'sweep.reset'; sweep: SweepSnapshot };

/** What the host knows of one sweep: its index (sweep.json) and each finished point's numbers. */
export interface SweepSnapshot {
  /** The sweep folder (absolute): the Sweep panel's id. */
  dir: string;
  label: string;
  index: SweepIndex;
  /** By point name; null until the point's run folder is complete. */
  results: Record<string, PointResult | null>;
}

/** Sweep panel → host: `ready`, or open the run panel of one point. */
export type SweepPanelMessage = { type: 'ready' } | { type: 'openPoint'; point: string };

/** What the Sweep panel persists: its sweep folder. */
export interface SweepPanelState {
  kind: 'sweep';
  dir: string;
}

export function toSweepPanelMessage(value: unknown): SweepPanelMessage | null {
  if (typeof value !== 'object' || value === null) return null;
  const m = value as { type?: unknown; point?: unknown };
  if (m.type === 'ready') return { type: 'ready' };
  return m.type === 'openPoint' && typeof m.point === 'string' ? { type: 'openPoint', point: m.point } : null;
}

export function toSweepPanelState(value: unknown): SweepPanelState | null {
  if (typeof value !== 'object' || value === null) return null;
  const s = value as { kind?: unknown; dir?: unknown };
  return s.kind === 'sweep' && typeof s.dir === 'string' ? { kind: 'sweep', dir: s.dir } : null;
}

/** Panel → host. */
export type PanelMessage =
  | { type: 'ready' }
  | { type: 'cancel'; runId: string }
  | { type: 'revealOutput'; runId: string }
  | { type: 'openReport'; runId: string };

/** What a panel persists with vscode.setState, so the host's WebviewPanelSerializer can reopen it. */
export type PanelState = { kind: 'run'; runId: string } | { kind: 'compare'; runIds: string[] };

const PANEL_TYPES = ['ready', 'cancel', 'revealOutput', 'openReport'] as const;

/** A message from a webview, checked (a webview is untrusted input to the host). */
export function toPanelMessage(value: unknown): PanelMessage | null {
  if (typeof value !== 'object' || value === null) return null;
  const m = value as { type?: unknown; runId?: unknown };
  if (!PANEL_TYPES.includes(m.type as (typeof PANEL_TYPES)[number])) return null;
  if (m.type === 'ready') return { type: 'ready' };
  if (typeof m.runId !== 'string') return null;
  return { type: m.type as Exclude<PanelMessage['type'], 'ready'>, runId: m.runId };
}

/** A persisted panel state, checked (it comes back from disk after a reload). */
export function toPanelState(value: unknown): PanelState | null {
  if (typeof value !== 'object' || value === null) return null;
  const s = value as { kind?: unknown; runId?: unknown; runIds?: unknown };
  if (s.kind === 'run' && typeof s.runId === 'string') return { kind: 'run', runId: s.runId };
  if (s.kind === 'compare' && Array.isArray(s.runIds) && s.runIds.every((x) => typeof x === 'string')) return { kind: 'compare', runIds: s.runIds };
  return null;
}
