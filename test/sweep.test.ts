// Sweeps (src/backend/sweep/): point expansion and its errors, what the points share (token ids, the dense
// perplexity, the first block's calibration sums) without changing any result, resume, the Slurm batch script, and the CLI. The real Slurm runs are in
// test/slurm/ (npm run test:slurm, after scripts/slurm/start-local.sh).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, resolveConfig } from '../src/protocol/config';
import { Event, EventOf, parseEvent } from '../src/protocol/events';
import { pointPaths, readPointResult, readSweepIndex, SweepIndex } from '../src/protocol/sweep';
import { loadTokenizer, readTokens } from '../src/backend/data/tokens';
import { rowPool } from '../src/backend/methods/rowKernels';
import { CalibrationSums } from '../src/backend/pipeline/calibrationSums';
import { runPrune } from '../src/backend/pipeline/run';
import { planSweep } from '../src/backend/sweep/expand';
import { runLocally } from '../src/backend/sweep/local';
import { fileCalibrationStore, shareTokens } from '../src/backend/sweep/shared';
import { arraySpec, batchScript, shellQuote } from '../src/backend/sweep/slurm';
import { indexOf, saveIndex, writePointConfigs } from '../src/backend/sweep/sweepFolder';
import { bundleCli, runCli } from './helpers/cliProbe';

const fixtures = path.resolve(__dirname, '..', '..', 'shared', 'fixtures');
const model = path.join(fixtures, 'stories260K-onnx');
const text = path.join(fixtures, 'data', 'tinystories_valid_head.txt');
const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-sweep-'));
let cli: string;

before(async () => {
  cli = await bundleCli('sweep-test');
});
after(async () => {
  rmSync(work, { recursive: true, force: true });
  await rowPool.close();
});

/** A tiny protocol on stories260K: 8 calibration windows of 64 tokens after the evaluation text, 8 evaluation windows of 64. */
function tinyConfig(sweep: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    checkpoint: model, threads: 1,
    calibration: { path: text, nsamples: 8, seqlen: 64, skipTokens: 65536 },
    evaluation: { path: text, maxWindows: 8 },
    ...extra, sweep,
  };
}

/** The CLI with sweep.point lines on stdout (not run events: runCli would parse them as such). */
function sweepCli(args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 180_000 });
}

function logOf(sweepDir: string, name: string): Event[] {
  return readFileSync(pointPaths(sweepDir, name).log, 'utf8').trim().split('\n').map(parseEvent);
}

const layerLosses = (events: Event[]) => events.flatMap((e) => (e.type === 'layer.pruned' ? [[e.layer, e.loss]] : []));

function problemsOf(f: () => unknown): string[] {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.path}: ${p.message}`);
    throw e;
  }
  assert.fail('expected a ConfigError');
}

describe('sweep expansion', () => {
  const file = path.join(work, 'grid.prune.json');

  test('every combination in key order, first key slowest; an N:M pattern ignores sparsity, so its duplicates go', () => {
    const plan = planSweep(file, tinyConfig({ method: ['apt', 'wanda'], sparsity: [0.5, 0.7], pattern: ['unstructured', '2:4'] }));
    assert.deepEqual(plan.points.map((p) => p.name), ['apt-50', 'apt-2of4', 'apt-70', 'wanda-50', 'wanda-2of4', 'wanda-70']);
    assert.deepEqual(plan.points.map((p) => p.sparsity), [0.5, 0.5, 0.7, 0.5, 0.5, 0.7]);
    assert.equal(plan.folder, path.join(work, 'grid-sweep'));
    for (const p of plan.points) {
      assert.equal(p.config.output, path.join(plan.folder, p.name));
      assert.equal(p.config.method, p.values.method);
      assert.equal(p.config.overwrite, false);
      assert.equal('sweep' in p.config, false);
    }
    assert.deepEqual(plan.points.map((p) => p.index), [0, 1, 2, 3, 4, 5]);
    assert.equal(plan.executor, 'local');
  });

  test('any single-valued setting and calibration./evaluation. keys by dotted name; output names the sweep folder', () => {
    const plan = planSweep(file, tinyConfig({ 'calibration.nsamples': [4, 16], dampening: [0.01, 0.1] }, { output: 'out/s' }));
    assert.deepEqual(plan.points.map((p) => [p.config.calibration && p.config.calibration.nsamples, p.config.dampening]), [[4, 0.01], [4, 0.1], [16, 0.01], [16, 0.1]]);
    assert.deepEqual(plan.points.map((p) => p.name), ['apt-50-nsamples-4-dampening-0.01', 'apt-50-nsamples-4-dampening-0.1', 'apt-50-nsamples-16-dampening-0.01', 'apt-50-nsamples-16-dampening-0.1']);
    assert.equal(plan.folder, path.join(work, 'out', 's'));
    assert.equal(plan.points[3].config.calibration && plan.points[3].config.calibration.seqlen, 64, 'the other calibration keys stay');
  });

  test('a bad value is named at its place in the sweep; keys that cannot be swept say why', () => {
    assert.deepEqual(problemsOf(() => planSweep(file, tinyConfig({ sparsity: [0.5, 1.5] }))), ['$.sweep.sparsity[1]: must be a number in (0, 1) (got 1.5)']);
    assert.deepEqual(problemsOf(() => planSweep(file, tinyConfig({ blockSize: [128, 0] }))), ['$.sweep.blockSize[1]: must be an integer in [1, 65536] (got 0)']);
    assert.deepEqual(problemsOf(() => planSweep(file, tinyConfig({ pattern: ['4:2'] }))).length, 1);
    assert.match(problemsOf(() => planSweep(file, tinyConfig({ pattern: ['4:2'] })))[0], /^\$\.sweep\.pattern\[0\]: .*N must be below M/);
    assert.deepEqual(problemsOf(() => planSweep(file, tinyConfig({ checkpoint: ['a', 'b'], 'calibration.bogus': [1], 'evaluation.maxWindows': [2] }, { evaluation: false }))), [
      '$.sweep.checkpoint: "checkpoint" cannot be swept (a sweep runs one model, into one folder, on one machine)',
      '$.sweep["calibration.bogus"]: "bogus" is not a setting of calibration',
      '$.sweep["evaluation.maxWindows"]: needs "evaluation" in the config to vary (add "evaluation": { "path": … })',
    ]);
    assert.deepEqual(problemsOf(() => planSweep(file, tinyConfig({ calibration: [{ path: text }] }))), ['$.sweep.calibration: "calibration" cannot be swept as a whole: sweep its keys, e.g. "calibration.nsamples"']);
    assert.deepEqual(problemsOf(() => planSweep(file, tinyConfig({ sparsity: [] }))), ['$.sweep.sparsity: must have at least 1 item']);
    assert.deepEqual(problemsOf(() => planSweep(file, tinyConfig({ executor: 'slurm' }))), ['$.sweep: lists no values: add e.g. "method": ["apt", "sparsegpt"]']);
    assert.deepEqual(problemsOf(() => planSweep(file, tinyConfig({ method: ['apt'], slurm: { time: 'soon' } }))), ['$.sweep.slurm.time: must be a Slurm time limit: minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]], e.g. "02:00:00" (got "soon")']);
  });

  test('a point config is a plain run: resolveConfig drops the sweep key, and prunekit prune refuses a sweep config', () => {
    const c = resolveConfig(tinyConfig({ method: ['apt'] }), work);
    assert.equal('sweep' in c, false);
    writeFileSync(file, JSON.stringify(tinyConfig({ method: ['apt'] })));
    const r = runCli(cli, ['prune', '--config', file, '--json']);
    assert.equal(r.code, 1);
    const failed = r.events.at(-1) as EventOf<'run.failed'>;
    assert.equal(failed.code, 'config-invalid');
    assert.equal(failed.jsonPath, '$.sweep');
    assert.match(failed.message, /is a sweep: run it with prunekit sweep/);
  });
});

describe('the Slurm batch script', () => {
  test('--array lists the unfinished points as ranges; options become #SBATCH lines; the preamble comes before set -u', () => {
    assert.equal(arraySpec([0, 1, 2, 4, 6, 7]), '0-2,4,6-7');
    assert.equal(shellQuote("it's a path"), `'it'\\''s a path'`);
    const plan = planSweep(path.join(work, 'cluster.prune.json'), tinyConfig({ method: ['apt', 'sparsegpt'], sparsity: [0.5, 0.6] }));
    const index = indexOf(plan, 'slurm');
    index.points[1].status = 'finished';
    const script = batchScript('/scratch/my sweep', index, {
      partition: 'gpu', account: 'proj', time: '02:00:00', gpusPerTask: 1, cpusPerTask: 8, memPerTask: '64G', maxParallel: 2,
      preamble: ['module load cuda/12.4'], command: 'prunekit',
    }) as string;
    const lines = script.split('\n');
    assert.deepEqual(lines.filter((l) => l.startsWith('#SBATCH')), [
      '#SBATCH --job-name=prunekit-my_sweep', '#SBATCH --array=0,2-3%2', '#SBATCH --output=logs/slurm-%A_%a.out', '#SBATCH --ntasks=1',
      '#SBATCH --partition=gpu', '#SBATCH --account=proj', '#SBATCH --time=02:00:00', '#SBATCH --gpus-per-task=1', '#SBATCH --cpus-per-task=8', '#SBATCH --mem=64G',
    ]);
    assert.ok(lines.indexOf('module load cuda/12.4') < lines.indexOf('set -euo pipefail'));
    assert.ok(lines.includes(`sweep='/scratch/my sweep'`));
    assert.ok(lines.includes('points=(apt-50 apt-60 sparsegpt-50 sparsegpt-60)'));
    assert.equal(lines.at(-2), 'exec prunekit prune --config "$sweep/points/$point.prune.json" --sweep "$sweep" --json > "$sweep/logs/$point.ndjson"');
    assert.equal(spawnSync('bash', ['-n'], { input: script }).status, 0, 'bash parses it');
    // What a task runs: the array index picks its point.
    const echo = script.replace(/^exec prunekit/m, 'echo').replace(/ > .*$/m, '');
    const r = spawnSync('bash', ['-c', echo], { env: { ...process.env, SLURM_ARRAY_TASK_ID: '2' }, encoding: 'utf8' });
    assert.equal(r.stdout.trim(), `prune --config /scratch/my sweep/points/sparsegpt-50.prune.json --sweep /scratch/my sweep --json`);
    for (const p of index.points) p.status = 'finished';
    assert.equal(batchScript('/s', index, {}), null, 'nothing to submit');
  });
});

describe('a local sweep on stories260K', () => {
  const file = path.join(work, 'local.prune.json');
  const raw = tinyConfig({ method: ['wanda', 'sparsegpt'], sparsity: [0.5] });
  let index: SweepIndex;

  test('shares token ids and the dense perplexity, and its results equal standalone runs on the text', async () => {
    const plan = planSweep(file, raw);
    const points = shareTokens(plan.points, plan.folder, () => assert.fail('no warning'));
    const ids = points[0].config.calibration && points[0].config.calibration.path;
    assert.ok(ids && ids.startsWith(path.join(plan.folder, 'shared')) && ids === (points[1].config.evaluation && points[1].config.evaluation.path), 'one id file for both roles and points');
    assert.deepEqual(JSON.parse(readFileSync(ids, 'utf8')), Array.from(readTokens(text, loadTokenizer(path.join(model, 'tokenizer.json')))));
    writePointConfigs(plan, points);
    index = indexOf(plan, 'local');
    saveIndex(plan.folder, index);
    const seen: string[] = [];
    await runLocally(plan.folder, index, points, { onPoint: (p) => seen.push(`${p.name} ${p.status}`) });
    assert.deepEqual(seen, ['wanda-50 running', 'wanda-50 finished', 'sparsegpt-50 running', 'sparsegpt-50 finished']);
    assert.deepEqual(readSweepIndex(plan.folder)?.points.map((p) => p.status), ['finished', 'finished']);

    const dense = (name: string) => logOf(plan.folder, name).find((e) => e.type === 'evaluation.finished' && e.model === 'dense') as EventOf<'evaluation.finished'>;
    assert.ok(dense('wanda-50').seconds > 0, 'the first point measures the dense model');
    assert.equal(dense('sparsegpt-50').seconds, 0, 'the second reads it');
    assert.equal(dense('sparsegpt-50').perplexity, dense('wanda-50').perplexity);

    // The second point read the first block's dense calibration sums the first one wrote: no Hessian pass there.
    const firstBlock = (logOf(plan.folder, 'wanda-50').find((e) => e.type === 'block.finished') as EventOf<'block.finished'>).block;
    const hessianBlocks = (name: string) => new Set(logOf(plan.folder, name).flatMap((e) => (e.type === 'calibration.progressed' && e.phase === 'hessian' ? [e.block] : [])));
    assert.ok(hessianBlocks('wanda-50').has(firstBlock), 'the first point calibrates the first block');
    assert.ok(!hessianBlocks('sparsegpt-50').has(firstBlock) && hessianBlocks('sparsegpt-50').size > 0, 'the second reads its sums and calibrates the others');
    assert.ok(readdirSync(path.join(plan.folder, 'shared')).some((f) => /^calibration-[0-9a-f]{16}\.bin$/.test(f)));

    for (const p of plan.points) {
      const alone: Event[] = [];
      await runPrune({ ...p.config, output: path.join(work, `alone-${p.name}`) }, { emit: (e) => alone.push(e) });
      const r = readPointResult(plan.folder, p.name);
      const ppl = alone.flatMap((e) => (e.type === 'evaluation.finished' ? [e.perplexity] : []));
      assert.deepEqual([r?.densePerplexity, r?.prunedPerplexity], ppl, `${p.name}: the same numbers as a run on the text itself`);
      assert.deepEqual(layerLosses(logOf(plan.folder, p.name)), layerLosses(alone), `${p.name}: the same per-layer losses, bit for bit`);
    }
  });

  test('a corrupt or mismatched shared calibration file is not used: a warning, computed again, the same results', async () => {
    const plan = planSweep(file, raw);
    const shared = path.join(plan.folder, 'shared');
    const [bin] = readdirSync(shared).filter((f) => f.startsWith('calibration-')).map((f) => path.join(shared, f));
    const good = readFileSync(bin);
    const store = fileCalibrationStore(plan.folder);
    const key = (JSON.parse(good.subarray(4, 4 + good.readUInt32LE(0)).toString('utf8')) as { key: string }).key;
    /** The reasons the store gives for not using `bytes` as the file. */
    const reasons = (bytes: Buffer): string[] => {
      writeFileSync(bin, bytes);
      const heard: string[] = [];
      assert.equal(store.get(key, (m, f) => heard.push(`${f === bin} ${m}`)), undefined);
      return heard.map((m) => m.replace(/^true .*: not used \((.*)\); the first block is calibrated again$/, '$1'));
    };
    assert.ok(store.get(key, () => assert.fail('no warning')), 'the intact file is read');
    const flipped = Buffer.from(good);
    flipped[good.length - 3] ^= 1;
    assert.deepEqual(reasons(flipped), ['checksum mismatch']);
    assert.deepEqual(reasons(good.subarray(0, good.length - 8)), [`${good.length - 8} bytes, the header says ${good.length}`]);
    assert.deepEqual(reasons(Buffer.from('not a sums file')), ['bad header length']);
    const other = JSON.stringify([...(JSON.parse(key) as unknown[]).slice(0, -1), 'other windows']);
    const otherFile = path.join(shared, `calibration-${createHash('sha256').update(other).digest('hex').slice(0, 16)}.bin`);
    writeFileSync(otherFile, good);
    const heard: string[] = [];
    assert.equal(store.get(other, (m) => heard.push(m)), undefined);
    assert.match(heard.join('\n'), /^\S+calibration-[0-9a-f]{16}\.bin: not used \(made for other settings\)/);
    rmSync(otherFile);

    // A run meeting the corrupt file warns, calibrates the first block itself, rewrites the file, and prunes as before.
    writeFileSync(bin, flipped);
    const p = plan.points[1];
    const events: Event[] = [];
    await runPrune({ ...p.config, output: path.join(work, 'corrupt-shared') }, { emit: (e) => events.push(e), calibrationStore: store });
    const w = events.filter((e) => e.type === 'warning.raised') as EventOf<'warning.raised'>[];
    assert.deepEqual(w.map((e) => [e.code, e.file]), [['sweep-shared', bin]]);
    assert.match(w[0].message, /not used \(checksum mismatch\); the first block is calibrated again$/);
    assert.deepEqual(layerLosses(events), layerLosses(logOf(plan.folder, p.name)));
    assert.deepEqual(readFileSync(bin), good, 'rewritten as it was');
  });

  test('a re-run skips finished points and runs the rest; a failing point does not stop the others', async () => {
    writeFileSync(file, JSON.stringify(raw));
    const r1 = sweepCli(['sweep', file]);
    assert.equal(r1.status, 0, r1.stderr);
    const plan = planSweep(file, raw);
    const report = (n: string) => pointPaths(plan.folder, n).report;
    const before = statSync(report('wanda-50')).mtimeMs;
    const apt = readPointResult(plan.folder, 'sparsegpt-50');
    rmSync(pointPaths(plan.folder, 'sparsegpt-50').output, { recursive: true });
    const r2 = sweepCli(['sweep', file, '--json']);
    assert.equal(r2.status, 0, r2.stderr);
    const ran = r2.stdout.split('\n').filter((l) => l.startsWith('{"type":"sweep.point"')).map((l) => JSON.parse(l) as { point: { name: string; status: string } });
    assert.deepEqual(ran.map((e) => `${e.point.name} ${e.point.status}`), ['sparsegpt-50 running', 'sparsegpt-50 finished']);
    assert.equal(statSync(report('wanda-50')).mtimeMs, before, 'the finished point was not run again');
    assert.deepEqual(readPointResult(plan.folder, 'sparsegpt-50')?.prunedPerplexity, apt?.prunedPerplexity);

    // A point that fails (its evaluation windows would need far more memory than any machine has) is failed with the
    // run's message, and the points after it still run.
    const broken = path.join(work, 'broken.prune.json');
    writeFileSync(broken, JSON.stringify({ checkpoint: model, threads: 1, method: 'magnitude', calibration: null, evaluation: { path: text, maxWindows: 2 }, sweep: { 'evaluation.seqlen': [1048576, 64] } }));
    const bplan = planSweep(broken, JSON.parse(readFileSync(broken, 'utf8')));
    const bpoints = shareTokens(bplan.points, bplan.folder, () => undefined);
    writePointConfigs(bplan, bpoints);
    const bindex = indexOf(bplan, 'local');
    await runLocally(bplan.folder, bindex, bpoints, { onPoint: () => undefined });
    assert.deepEqual(bindex.points.map((p) => p.status), ['failed', 'finished']);
    assert.match(bindex.points[0].message ?? '', /^the run needs about \d+(\.\d+)? GiB/);
    assert.ok(!existsSync(pointPaths(bplan.folder, bindex.points[0].name).output), 'no output of the failed point');
  });

  test('the calibration store keeps sums bit for bit (float64 Σx², counts, output sums); one it cannot write is a warning', () => {
    const sums = new CalibrationSums(3, 2);
    sums.add(Float32Array.from({ length: 18 }, (_, i) => Math.fround(Math.PI * (i + 1))), Float32Array.from([1, 2, 3, 4, 5, 6], (v) => Math.fround(v / 7)), 5, 11);
    sums.add(new Float32Array(18).fill(1e-7), Float32Array.from([1, 2, 3, 4, 5, 6], (v) => Math.fround(v / 3)), 2, 4);
    sums.addOutput('q', Float32Array.from([0.1, 0.2, 0.3]));
    const dir = path.join(work, 'store');
    const store = fileCalibrationStore(dir);
    store.put('k', new Map([['x', sums.saved()]]), () => assert.fail('no warning'));
    const back = store.get('k', () => assert.fail('no warning'))?.get('x');
    assert.ok(back);
    assert.deepEqual({ ...back, xtx: Array.from(back.xtx), colSq: Array.from(back.colSq) }, { ...sums.saved(), xtx: Array.from(sums.xtx), colSq: Array.from(sums.colSq) });
    assert.deepEqual(CalibrationSums.restore(back).hessian(), sums.hessian());
    assert.equal(store.get('other', () => assert.fail('no warning')), undefined, 'none kept for another key');

    const blocked = path.join(work, 'blocked');
    writeFileSync(blocked, ''); // shared/ cannot be made under a file
    const heard: string[] = [];
    fileCalibrationStore(blocked).put('k', new Map([['x', new CalibrationSums(3).saved()]]), (m) => heard.push(m));
    assert.match(heard.join('\n'), /^\S+calibration-[0-9a-f]{16}\.bin: not written \(ENOTDIR.*\); the other points calibrate the first block themselves$/);
  });

  test('--dry-run prints the points and writes nothing', () => {
    const dry = path.join(work, 'dry.prune.json');
    writeFileSync(dry, JSON.stringify(tinyConfig({ method: ['apt'], pattern: ['2:4', '4:8'], executor: 'slurm', slurm: { partition: 'gpu' } })));
    const r = sweepCli(['sweep', dry, '--dry-run']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^sweep: 2 points in .*dry-sweep, executor slurm\n {2}apt-2of4 +\{"method":"apt","pattern":"2:4"\}\n {2}apt-4of8 /);
    assert.match(r.stdout, /#SBATCH --partition=gpu\n/);
    assert.ok(!existsSync(path.join(work, 'dry-sweep')));
  });
});
