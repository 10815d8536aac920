// Sweeps on a real Slurm (npm run test:slurm, after scripts/slurm/start-local.sh; .ci/run does both): a 2 × 2 sweep on
// stories260K submitted as one job array finishes with the perplexities of the same points run locally, and a cancelled
// sweep ends every task and leaves no partial output. Without a running Slurm these tests fail: they never skip.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pointPaths, readPointResult, readSweepIndex } from '../../src/protocol/sweep';
import { bundleCli } from '../helpers/cliProbe';

const fixtures = path.resolve(__dirname, '..', '..', '..', 'shared', 'fixtures');
const model = path.join(fixtures, 'stories260K-onnx');
const text = path.join(fixtures, 'data', 'tinystories_valid_head.txt');
// Slurm tasks may run as another process tree but on this machine: a folder every task can reach.
const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-slurm-sweep-'));
let cli: string;

before(async () => {
  const idle = spawnSync('sinfo', ['-h', '-o', '%T'], { encoding: 'utf8' });
  if (idle.error || !/^(idle|mixed|allocated)$/m.test(idle.stdout)) {
    throw new Error(`no Slurm node is up (sinfo: ${idle.error?.message ?? (idle.stderr.trim() || idle.stdout.trim() || 'no nodes')}): start one with bash scripts/slurm/start-local.sh`);
  }
  cli = await bundleCli('sweep-slurm-test');
});
after(() => rmSync(work, { recursive: true, force: true }));

function writeConfig(name: string, sweep: Record<string, unknown>, calibration: Record<string, unknown>, maxWindows: number): string {
  const file = path.join(work, `${name}.prune.json`);
  writeFileSync(file, JSON.stringify({
    checkpoint: model, threads: 1, output: name,
    calibration: { path: text, skipTokens: 65536, ...calibration },
    evaluation: { path: text, maxWindows },
    sweep,
  }));
  return file;
}

/** `prunekit sweep args…`, awaited (the Slurm watcher polls: a synchronous spawn would block this test's own timers). */
function sweep(args: string[], timeoutMs = 170_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, 'sweep', ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function queued(jobId: string): string {
  return spawnSync('squeue', ['-h', '-r', '-j', jobId, '-o', '%i %T'], { encoding: 'utf8' }).stdout.trim();
}

describe('a sweep on a real Slurm', () => {
  test('a 2 × 2 sweep as one job array: four finished runs with the perplexities of the same points run locally', async () => {
    const points = { method: ['wanda', 'sparsegpt'], sparsity: [0.5, 0.6] };
    const calibration = { nsamples: 8, seqlen: 64 };
    const onSlurm = writeConfig('on-slurm', { ...points, executor: 'slurm' }, calibration, 8);
    const r = await sweep([onSlurm, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const dir = path.join(work, 'on-slurm');
    const index = readSweepIndex(dir);
    assert.ok(index?.slurm && /^\d+$/.test(index.slurm.jobId), 'the index names the array job');
    assert.deepEqual(index.points.map((p) => [p.name, p.status, p.jobId]), ['wanda-50', 'wanda-60', 'sparsegpt-50', 'sparsegpt-60'].map((n, i) => [n, 'finished', `${index.slurm?.jobId}_${i}`]));
    const ends = r.stdout.split('\n').filter((l) => l.startsWith('{"type":"sweep.point"')).map((l) => JSON.parse(l) as { point: { name: string; status: string } });
    assert.deepEqual(ends.filter((e) => e.point.status === 'finished').map((e) => e.point.name).sort(), ['sparsegpt-50', 'sparsegpt-60', 'wanda-50', 'wanda-60']);
    for (const p of index.points) assert.ok(readFileSync(path.join(dir, 'logs', `slurm-${index.slurm.jobId}_${p.index}.out`), 'utf8') !== null, 'Slurm wrote each task\'s log');
    assert.equal(queued(index.slurm.jobId), '', 'no task left in the queue');

    const here = writeConfig('here', points, calibration, 8);
    const l = await sweep([here, '--executor', 'local']);
    assert.equal(l.code, 0, l.stderr);
    for (const p of index.points) {
      const slurm = readPointResult(dir, p.name);
      const local = readPointResult(path.join(work, 'here'), p.name);
      assert.ok(slurm?.prunedPerplexity && Number.isFinite(slurm.prunedPerplexity) && slurm.prunedPerplexity > (slurm.densePerplexity ?? Infinity), `${p.name}: pruning raised the perplexity`);
      assert.deepEqual([slurm.densePerplexity, slurm.prunedPerplexity, slurm.sparsity], [local?.densePerplexity, local?.prunedPerplexity, local?.sparsity], `${p.name}: Slurm and local agree`);
    }
  });

  test('--cancel: scancel ends every task, the points are cancelled, and no partial output is left', async () => {
    // Points long enough to be caught running: more calibration windows, APT's refits.
    const file = writeConfig('cancelled', { method: ['apt', 'sparsegpt'], sparsity: [0.5, 0.6], executor: 'slurm' }, { nsamples: 128, seqlen: 256 }, 64);
    const submitted = await sweep([file, '--detach']);
    assert.equal(submitted.code, 0, submitted.stderr);
    const dir = path.join(work, 'cancelled');
    const jobId = readSweepIndex(dir)?.slurm?.jobId as string;
    assert.match(jobId, /^\d+$/);
    const pruning = () => readSweepIndex(dir)?.points.some((p) => existsSync(pointPaths(dir, p.name).log) && readFileSync(pointPaths(dir, p.name).log, 'utf8').includes('"type":"calibration.progressed"'));
    for (let t0 = Date.now(); !pruning(); ) {
      assert.ok(Date.now() - t0 < 60_000, `no task started pruning in 60 s (squeue: ${queued(jobId)})`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const c = await sweep([file, '--cancel', '--json']);
    assert.equal(c.code, 130, c.stderr);
    assert.equal(queued(jobId), '', 'every task has ended');
    assert.equal(spawnSync('pgrep', ['-f', `${dir}/points/`]).status, 1, 'no prunekit process of the sweep is left');
    const index = readSweepIndex(dir);
    assert.deepEqual(index?.points.map((p) => p.status), ['cancelled', 'cancelled', 'cancelled', 'cancelled']);
    const started = index?.points.filter((p) => existsSync(pointPaths(dir, p.name).log)) ?? [];
    assert.ok(started.length >= 1);
    for (const p of started) assert.match(readFileSync(pointPaths(dir, p.name).log, 'utf8').trim().split('\n').at(-1) ?? '', /"type":"run\.cancelled"/, `${p.name} ended as a cancelled run`);
    assert.deepEqual(readdirSync(dir).sort(), ['logs', 'points', 'shared', 'sweep.json', 'sweep.sbatch'], 'no run folder and no temporary of one');
  });
});
