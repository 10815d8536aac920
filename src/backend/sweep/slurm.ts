// The slurm executor: Slurm schedules, PruneKit only writes the batch script (one `sbatch --array` job, a task per
// unfinished point, each running `prunekit prune --config points/<name>.prune.json` into the sweep folder), submits it,
// and watches the points' files (and `squeue`, for tasks that ended without writing a result). Cancel is `scancel`.

import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { BACKEND_ENV } from '../../protocol/backendEnv';
import { SlurmOptions, SweepIndex, SweepPoint } from '../../protocol/sweep';
import { RunError } from '../pipeline/errors';
import { SweepHooks } from './local';
import { saveIndex, statusFromFiles } from './sweepFolder';

/** A word for bash, single-quoted when it needs to be. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** `0-3,5,7-8`: the --array list of task indices. */
export function arraySpec(indices: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < indices.length; i++) {
    let j = i;
    while (j + 1 < indices.length && indices[j + 1] === indices[j] + 1) j++;
    parts.push(i === j ? `${indices[i]}` : `${indices[i]}-${indices[j]}`);
    i = j;
  }
  return parts.join(',');
}

/** The PruneKit that runs the sweep now: this Node (VS Code's runtime included) and this backend.js. */
export function defaultCommand(): string {
  return [process.execPath, path.resolve(process.argv[1])].map(shellQuote).join(' ');
}

/** The batch script for the index's unfinished points; null when every point is finished. Run with `sbatch --chdir <sweep>`. */
export function batchScript(sweepDir: string, index: SweepIndex, options: SlurmOptions, command = options.command ?? defaultCommand()): string | null {
  const todo = index.points.filter((p) => p.status !== 'finished').map((p) => p.index);
  if (todo.length === 0) return null;
  const sbatch = [
    `--job-name=prunekit-${path.basename(sweepDir).replace(/[^A-Za-z0-9._-]+/g, '_')}`,
    `--array=${arraySpec(todo)}${options.maxParallel ? `%${options.maxParallel}` : ''}`,
    '--output=logs/slurm-%A_%a.out',
    '--ntasks=1',
    ...(options.partition ? [`--partition=${options.partition}`] : []),
    ...(options.account ? [`--account=${options.account}`] : []),
    ...(options.time ? [`--time=${options.time}`] : []),
    ...(options.gpusPerTask ? [`--gpus-per-task=${options.gpusPerTask}`] : []),
    ...(options.cpusPerTask ? [`--cpus-per-task=${options.cpusPerTask}`] : []),
    ...(options.memPerTask ? [`--mem=${options.memPerTask}`] : []),
  ];
  const env = { ...BACKEND_ENV, ...(process.versions.electron && !options.command ? { ELECTRON_RUN_AS_NODE: '1' } : {}) };
  return [
    '#!/bin/bash',
    ...sbatch.map((o) => `#SBATCH ${o}`),
    `# PruneKit sweep of ${index.config}: one point per array task (sweep.json lists them). Written by prunekit sweep.`,
    ...(options.preamble ?? []),
    'set -euo pipefail',
    `export ${Object.entries(env).map(([k, v]) => `${k}=${shellQuote(v)}`).join(' ')}`,
    `sweep=${shellQuote(sweepDir)}`,
    `points=(${index.points.map((p) => shellQuote(p.name)).join(' ')})`,
    'point=${points[$SLURM_ARRAY_TASK_ID]}',
    `exec ${command} prune --config "$sweep/points/$point.prune.json" --sweep "$sweep" --json > "$sweep/logs/$point.ndjson"`,
    '',
  ].join('\n');
}

function slurmCommand(cmd: string, args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new RunError('bad-argument', `${cmd}: ${(r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found: the slurm executor needs Slurm\'s commands (sbatch, squeue, scancel) on the PATH' : r.error.message}`);
  return { code: r.status, out: r.stdout, err: r.stderr.trim() };
}

/** Submits the script (in the sweep folder); returns the array job's id. */
export function submit(sweepDir: string, scriptFile: string): string {
  const r = slurmCommand('sbatch', ['--parsable', `--chdir=${sweepDir}`, scriptFile]);
  const id = r.out.trim().split(';')[0];
  if (r.code !== 0 || !/^\d+$/.test(id)) throw new RunError('bad-argument', `sbatch refused ${scriptFile}: ${r.err || r.out.trim()}`, { file: scriptFile }, 'check the "sweep.slurm" options (partition, account, time) against your cluster');
  return id;
}

/** Each live array task's state (PENDING, RUNNING, …) by task index; empty once the job has left the queue. */
export function queuedTasks(jobId: string): Map<number, string> {
  const r = slurmCommand('squeue', ['-h', '-r', '-j', jobId, '-o', '%K %T']);
  if (r.code !== 0) {
    if (/Invalid job id/i.test(r.err)) return new Map(); // purged: every task is over
    throw new RunError('bad-argument', `squeue -j ${jobId}: ${r.err}`);
  }
  const out = new Map<number, string>();
  for (const line of r.out.split('\n')) {
    const [task, state] = line.trim().split(/\s+/);
    if (/^\d+$/.test(task)) out.set(Number(task), state);
  }
  return out;
}

export function cancelJob(jobId: string): void {
  const r = slurmCommand('scancel', [jobId]);
  if (r.code !== 0) throw new RunError('bad-argument', `scancel ${jobId}: ${r.err}`);
}

/**
 * Follows a submitted sweep until none of its tasks is queued or running: each point's status from its files, else
 * from squeue; a task that left the queue without a result is failed (its Slurm log says why: time limit, memory).
 */
export async function watchSlurm(sweepDir: string, index: SweepIndex, hooks: SweepHooks & { pollMs?: number; cancelled?: () => boolean }): Promise<SweepIndex> {
  const jobId = index.slurm?.jobId as string;
  for (;;) {
    const tasks = queuedTasks(jobId);
    let changed = false;
    for (const p of index.points) {
      if (p.status === 'finished' || p.status === 'failed' || p.status === 'cancelled') continue;
      const next = pointStatus(sweepDir, jobId, p, tasks.get(p.index), hooks.cancelled?.() ?? false);
      if (next.status !== p.status) {
        Object.assign(p, next);
        changed = true;
        saveIndex(sweepDir, index);
        hooks.onPoint(p);
      }
    }
    if (!changed && tasks.size === 0) return index;
    if (hooks.signal?.aborted) return index;
    await new Promise((r) => setTimeout(r, hooks.pollMs ?? 2000));
  }
}

function pointStatus(sweepDir: string, jobId: string, p: SweepPoint, state: string | undefined, cancelled: boolean): Pick<SweepPoint, 'status' | 'message'> {
  const files = statusFromFiles(sweepDir, p.name);
  if (files && files.status !== 'started') return { status: files.status, message: files.message };
  if (state === 'PENDING') return { status: 'queued' };
  if (state !== undefined) return { status: 'running' };
  if (cancelled) return { status: 'cancelled', message: 'cancelled (scancel)' };
  return { status: 'failed', message: `the Slurm task ended without a result: see ${path.join(sweepDir, 'logs', `slurm-${jobId}_${p.index}.out`)}` };
}
