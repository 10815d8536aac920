// `prunekit sweep <config>`: expands the config's sweep into points, prepares what they share, and runs them with the
// chosen executor (local: here, one after another; slurm: one job array), or only prints them (--dry-run).

import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { readPointResult, readSweepIndex, SWEEP_EXECUTORS, SweepExecutor, SweepIndex, SweepPoint, SweepPointEvent } from '../../protocol/sweep';
import { RunError } from '../pipeline/errors';
import { planSweep, SweepPlan } from './expand';
import { runLocally } from './local';
import { shareTokens } from './shared';
import { batchScript, cancelJob, queuedTasks, submit, watchSlurm } from './slurm';
import { indexOf, saveIndex, writePointConfigs } from './sweepFolder';

export interface SweepOptions {
  executor?: string;
  dryRun?: boolean;
  /** slurm: submit and return without watching. */
  detach?: boolean;
  /** slurm: scancel the sweep's job array and watch its tasks end. */
  cancel?: boolean;
  json?: boolean;
  signal?: AbortSignal;
  /** How often the slurm watcher looks (ms). */
  pollMs?: number;
}

/** Runs the sweep of a parsed config file; the exit code: 0 every point finished, 1 some failed, 130 cancelled. */
export async function sweepCommand(configFile: string, raw: Record<string, unknown>, o: SweepOptions): Promise<number> {
  const plan = planSweep(configFile, raw);
  const executor = executorOf(o.executor ?? plan.executor);
  const say = (s: string) => process.stdout.write(s + '\n');
  if (o.cancel) return cancelSweep(plan, o, say);
  if (o.dryRun) return dryRun(plan, executor, say);

  mkdirSync(plan.folder, { recursive: true });
  const previous = readSweepIndex(plan.folder);
  if (previous?.slurm && queuedTasks(previous.slurm.jobId).size > 0) {
    throw new RunError('output-exists', `${plan.folder}: this sweep is still running as Slurm job ${previous.slurm.jobId}`, { file: plan.folder }, 'wait for it, or stop it with prunekit sweep --cancel');
  }
  const points = shareTokens(plan.points, plan.folder, (m) => process.stderr.write(`warning: ${m}\n`));
  writePointConfigs(plan, points);
  const index = indexOf(plan, executor);
  saveIndex(plan.folder, index);
  const onPoint = reporter(plan, index, o.json, say);
  const todo = index.points.filter((p) => p.status !== 'finished').length;
  if (!o.json) say(`sweep: ${index.points.length} points in ${plan.folder} (${index.points.length - todo} finished before), executor ${executor}`);

  if (executor === 'local') await runLocally(plan.folder, index, points, { signal: o.signal, onPoint });
  else {
    const script = batchScript(plan.folder, index, plan.slurm);
    if (script) {
      const scriptFile = path.join(plan.folder, 'sweep.sbatch');
      mkdirSync(path.join(plan.folder, 'logs'), { recursive: true }); // Slurm writes its task logs there and creates no folder
      writeFileSync(scriptFile, script, { mode: 0o755 });
      const jobId = submit(plan.folder, scriptFile);
      index.slurm = { jobId, script: scriptFile };
      for (const p of index.points) if (p.status !== 'finished') p.jobId = `${jobId}_${p.index}`;
      saveIndex(plan.folder, index);
      if (!o.json) say(`submitted Slurm job array ${jobId} (${todo} tasks): ${scriptFile}`);
      if (o.detach) return 0;
      await watchSlurm(plan.folder, index, { signal: o.signal, onPoint, pollMs: o.pollMs });
    }
  }
  return summary(plan, index, o.json, say);
}

function executorOf(name: string): SweepExecutor {
  if (!(SWEEP_EXECUTORS as readonly string[]).includes(name)) throw new RunError('bad-argument', `--executor ${name}: use local or slurm`);
  return name as SweepExecutor;
}

function dryRun(plan: SweepPlan, executor: SweepExecutor, say: (s: string) => void): number {
  const index = indexOf(plan, executor);
  say(`sweep: ${index.points.length} points in ${plan.folder}, executor ${executor}`);
  for (const p of index.points) say(`  ${p.name.padEnd(28)} ${JSON.stringify(p.values)}${p.status === 'finished' ? '  (finished)' : ''}`);
  if (executor === 'slurm') {
    const script = batchScript(plan.folder, index, plan.slurm);
    say(script ? `\nbatch script (sbatch --chdir=${plan.folder} sweep.sbatch):\n${script}` : '\nevery point is finished: nothing to submit');
  }
  return 0;
}

async function cancelSweep(plan: SweepPlan, o: SweepOptions, say: (s: string) => void): Promise<number> {
  const index = readSweepIndex(plan.folder);
  if (!index?.slurm) throw new RunError('bad-argument', `${plan.folder}: no Slurm job to cancel (a local sweep stops with its process: Ctrl-C)`, { file: plan.folder });
  cancelJob(index.slurm.jobId);
  if (!o.json) say(`scancel ${index.slurm.jobId}: waiting for its tasks to end`);
  await watchSlurm(plan.folder, index, { onPoint: reporter(plan, index, o.json, say), pollMs: o.pollMs, cancelled: () => true });
  return summary(plan, index, o.json, say);
}

/** One line (or one sweep.point event) per status change. */
function reporter(plan: SweepPlan, index: SweepIndex, json: boolean | undefined, say: (s: string) => void): (p: SweepPoint) => void {
  return (p) => {
    const result = p.status === 'finished' ? readPointResult(plan.folder, p.name) : null;
    if (json) {
      const e: SweepPointEvent = { type: 'sweep.point', sweep: plan.folder, point: p, result };
      say(JSON.stringify(e));
      return;
    }
    const ppl = result?.prunedPerplexity != null ? `: perplexity ${result.densePerplexity?.toFixed(4)} → ${result.prunedPerplexity.toFixed(4)}` : '';
    say(`[${p.index + 1}/${index.points.length}] ${p.name} ${p.status}${p.jobId ? ` (job ${p.jobId})` : ''}${ppl}${p.message && p.status !== 'cancelled' ? `: ${p.message}` : ''}`);
  };
}

function summary(plan: SweepPlan, index: SweepIndex, json: boolean | undefined, say: (s: string) => void): number {
  const count = (s: SweepPoint['status']) => index.points.filter((p) => p.status === s).length;
  if (json) say(JSON.stringify({ type: 'sweep.finished', sweep: plan.folder, index }));
  else say(`sweep: ${count('finished')} finished, ${count('failed')} failed, ${count('cancelled')} cancelled, ${count('queued')} not run; index ${path.join(plan.folder, 'sweep.json')}`);
  if (count('cancelled') > 0) return 130;
  return count('finished') === index.points.length ? 0 : 1;
}
