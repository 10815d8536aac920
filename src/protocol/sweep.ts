// A sweep: one config with a `sweep` key expanded into points (methods × sparsities × patterns × …), each a normal
// run into its own folder under the sweep folder. The layout and the index (sweep.json) are read by the backend's
// executors (src/backend/sweep/) and by the extension (Runs view, Sweep panel), so they live here, once.
//
//   <sweep>/sweep.json                  the index: points, their status, Slurm job ids
//   <sweep>/points/<name>.prune.json    each point's full config (absolute paths): `prunekit prune --config` runs it
//   <sweep>/logs/<name>.ndjson          each point's events as they come (a run folder appears only when complete)
//   <sweep>/<name>/                     each point's run output (model, prune-report.json, events.ndjson)
//   <sweep>/shared/                     what the points share (token ids, the dense perplexity)
// No vscode.

import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { PatternString } from './pruning';

export const SWEEP_INDEX_FILE = 'sweep.json';
export const SWEEP_EXECUTORS = ['local', 'slurm'] as const;
export type SweepExecutor = (typeof SWEEP_EXECUTORS)[number];

export type PointStatus = 'queued' | 'running' | 'finished' | 'failed' | 'cancelled';

export interface SweepPoint {
  index: number;
  /** The run folder's name under the sweep folder, e.g. `apt-50`, `sparsegpt-2of4`. */
  name: string;
  /** The swept keys' values for this point (`calibration.nsamples` for nested keys). */
  values: Record<string, unknown>;
  method: string;
  pattern: PatternString;
  /** The fraction of zeros asked for: `sparsity`, or N/M for an N:M pattern. */
  sparsity: number;
  status: PointStatus;
  /** `<array job>_<task>` for a Slurm sweep. */
  jobId: string | null;
  /** Why it failed (the run's run.failed message), when it did. */
  message?: string;
}

export interface SweepIndex {
  prunekit: 1;
  /** The config file the sweep came from (absolute). */
  config: string;
  keys: string[];
  executor: SweepExecutor;
  /** The array job and its batch script, for a Slurm sweep. */
  slurm: { jobId: string; script: string } | null;
  points: SweepPoint[];
}

/** Where a point's files are. */
export function pointPaths(sweepDir: string, name: string): { output: string; config: string; log: string; report: string } {
  const output = path.join(sweepDir, name);
  return {
    output,
    config: path.join(sweepDir, 'points', `${name}.prune.json`),
    log: path.join(sweepDir, 'logs', `${name}.ndjson`),
    report: path.join(output, 'prune-report.json'),
  };
}

/** The sweep's index, or null when the folder holds none (or one this version cannot read). */
export function readSweepIndex(sweepDir: string): SweepIndex | null {
  const file = path.join(sweepDir, SWEEP_INDEX_FILE);
  if (!existsSync(file)) return null;
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as SweepIndex;
    return v && v.prunekit === 1 && Array.isArray(v.points) ? v : null;
  } catch {
    return null; // being replaced (written by rename, so only a partial copy elsewhere) or not ours
  }
}

/** What a finished point measured, from its prune-report.json. */
export interface PointResult {
  densePerplexity: number | null;
  prunedPerplexity: number | null;
  /** Measured zeros over the targeted weights. */
  sparsity: number;
  loss: number | null;
  seconds: number;
}

export function readPointResult(sweepDir: string, name: string): PointResult | null {
  const { report } = pointPaths(sweepDir, name);
  if (!existsSync(report)) return null;
  try {
    const t = (JSON.parse(readFileSync(report, 'utf8')) as { totals: Record<string, number | null> }).totals;
    return {
      densePerplexity: t.densePerplexity ?? null, prunedPerplexity: t.prunedPerplexity ?? null, sparsity: t.sparsity ?? 0,
      loss: t.loss ?? null, seconds: t.seconds ?? 0,
    };
  } catch {
    return null;
  }
}

/** `apt 2:4`, `wanda unstructured`: one chart line each. */
export function seriesOf(p: Pick<SweepPoint, 'method' | 'pattern'>): string {
  return `${p.method} ${p.pattern}`;
}

/** A sweep's progress line for `prunekit sweep` and the extension: one event per point status change. */
export interface SweepPointEvent {
  type: 'sweep.point';
  sweep: string;
  point: SweepPoint;
  result: PointResult | null;
}

/** The `sweep` key of a config: lists of values per swept key, and how the points run. */
export interface SweepConfig {
  executor?: SweepExecutor;
  slurm?: SlurmOptions;
  /** method, sparsity, pattern, `calibration.nsamples`, …: the values to run. */
  [key: string]: unknown;
}

/** The slurm executor's options: each becomes an #SBATCH line (or the preamble, or the command a task runs). */
export interface SlurmOptions {
  partition?: string;
  account?: string;
  time?: string;
  gpusPerTask?: number;
  cpusPerTask?: number;
  memPerTask?: string;
  maxParallel?: number;
  preamble?: string[];
  command?: string;
}

/** The keys of `sweep` that configure it rather than list values. */
export const SWEEP_SETTINGS: readonly string[] = ['executor', 'slurm'];
