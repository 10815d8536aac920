// The sweep folder's files (layout: src/protocol/sweep.ts): each point's config, the index, and a point's status as
// its files tell it, which is what both executors and a re-run go by.

import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ResolvedConfig } from '../../protocol/config';
import { parseEvent } from '../../protocol/events';
import { pointPaths, PointStatus, readSweepIndex, SWEEP_INDEX_FILE, SweepExecutor, SweepIndex, SweepPoint } from '../../protocol/sweep';
import { RunError } from '../pipeline/errors';
import { PlannedPoint, SweepPlan } from './expand';
import { writeFileAtomically } from './shared';

/**
 * Writes each point's config to points/<name>.prune.json. A finished point whose stored config differs from the new
 * one means the folder holds another sweep's results: refused, so a re-run never mixes two sweeps.
 */
export function writePointConfigs(plan: SweepPlan, points: PlannedPoint[]): void {
  for (const p of points) {
    const { config, report } = pointPaths(plan.folder, p.name);
    const text = JSON.stringify(p.config, null, 2) + '\n';
    if (existsSync(report) && existsSync(config) && readFileSync(config, 'utf8') !== text) {
      throw new RunError('output-exists', `${plan.folder}: point ${p.name} finished with another config (${config}); this sweep would mix two`, { file: plan.folder },
        'set another "output" for this sweep, or delete the old sweep folder');
    }
    writeFileAtomically(config, text);
  }
}

/** The config a point's file holds (what `prunekit prune --config` reads). */
export function pointConfig(sweepDir: string, name: string): ResolvedConfig {
  return JSON.parse(readFileSync(pointPaths(sweepDir, name).config, 'utf8')) as ResolvedConfig;
}

/** The index for a plan, each point's status from its files (finished points stay finished on a re-run). */
export function indexOf(plan: SweepPlan, executor: SweepExecutor): SweepIndex {
  const before = new Map(readSweepIndex(plan.folder)?.points.map((p) => [p.name, p]) ?? []);
  const points = plan.points.map((p): SweepPoint => {
    const seen = statusFromFiles(plan.folder, p.name);
    const status = seen?.status === 'finished' ? 'finished' : 'queued';
    return { index: p.index, name: p.name, values: p.values, method: p.method, pattern: p.pattern, sparsity: p.sparsity, status, jobId: status === 'finished' ? (before.get(p.name)?.jobId ?? null) : null };
  });
  return { prunekit: 1, config: plan.configFile, keys: plan.keys, executor, slurm: null, points };
}

export function saveIndex(sweepDir: string, index: SweepIndex): void {
  writeFileAtomically(path.join(sweepDir, SWEEP_INDEX_FILE), JSON.stringify(index, null, 2) + '\n');
}

/**
 * What a point's files say: finished (its run folder has a report), failed or cancelled (its log ends with
 * run.failed / run.cancelled, with the message), started (a log without an end); null when nothing was written yet.
 */
export function statusFromFiles(sweepDir: string, name: string): { status: PointStatus | 'started'; message?: string } | null {
  const { report, log } = pointPaths(sweepDir, name);
  if (existsSync(report)) return { status: 'finished' };
  if (!existsSync(log)) return null;
  const lines = readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('{'));
  for (const line of lines.slice(-3).reverse()) {
    let e;
    try {
      e = parseEvent(line);
    } catch {
      continue; // a line being written
    }
    if (e.type === 'run.failed') return { status: 'failed', message: e.message };
    if (e.type === 'run.cancelled') return { status: 'cancelled', message: `cancelled${e.lastLayer ? ` after ${e.lastLayer}` : ''}` };
  }
  return { status: 'started' };
}
