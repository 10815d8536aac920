// The run manager (src/extension/runs) against a fake backend that replays recorded real events (with delays,
// garbage lines, stderr and a chosen ending), and against the real backend on stories260K: progress reaches
// every layer, a real cancel leaves no output, runs persist and come back after a "reload".

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Event } from '../src/protocol/events';
import { progressOf } from '../src/protocol/progress';
import { backendInvocation, BackendInvocation } from '../src/extension/backendInvocation';
import { BACKEND_ENV } from '../src/protocol/backendEnv';
import { spillFileOf } from '../src/protocol/outputTemporaries';
import { describeProgress, formatDuration, runLabel } from '../src/extension/runs/describe';
import { readNdjson } from '../src/extension/runs/ndjson';
import type { Run, RunInfo } from '../src/extension/runs/run';
import { EVENTS_FILE, pruneArgs, RUN_FILE, RunChange, RunManager, RunManagerOptions } from '../src/extension/runs/runManager';
import { fixturesDir, repoRoot } from './helpers/realLayers';

const cli = path.join(repoRoot, 'src', 'backend', 'cli', 'main.ts');
const model = path.join(fixturesDir, 'stories260K-onnx');
/** Token ids (a .json needs no tokenizer, so the run reaches calibration at once). */
const calibrationIds = path.join(fixturesDir, 'stories260K-eval-ids.json');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'prunekit-runs-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** The real backend through tsx, as the extension starts dist/backend.js (argv, no shell). The backend's cwd
 *  is the model's folder, so tsx is named by its file URL, not resolved from there. */
const tsx = pathToFileURL(path.join(repoRoot, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
const realBackend = (cliArgs: string[]): BackendInvocation => ({ command: process.execPath, args: ['--import', tsx, cli, ...cliArgs], env: { ...process.env } });

/** Runs the real CLI once and returns its stdout events (a recording for the fake) and exit code. */
function recordReal(args: string[]): Promise<{ events: Event[]; lines: string[]; code: number }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repoRoot, maxBuffer: 64 << 20 }, (error, stdout) => {
      const lines = stdout.split('\n').filter((l) => l !== '');
      resolve({ events: readNdjson(stdout), lines, code: error ? Number(error.code) : 0 });
    });
  });
}

// ------------------------------------------------------------------------------------------------------------
// The fake backend: a node script that plays a plan of steps, records its argv, answers the cancel line on stdin
// like the real CLI (run.cancelled, exit 130) unless told to ignore it, and may leave temporaries as the real
// one does beside its output (<out>.tmp-<pid>/, <out>.spill-<pid>) until it finishes.

type Step = { out: string } | { partial: string } | { err: string } | { sleep: number } | { exit: number };
interface Plan {
  steps: Step[];
  ignoreCancel?: boolean;
  argvFile?: string;
  temporariesBeside?: string;
}

const FAKE = `
const fs = require('node:fs');
const plan = JSON.parse(fs.readFileSync(process.env.FAKE_PLAN, 'utf8'));
if (plan.argvFile) fs.writeFileSync(plan.argvFile, JSON.stringify(process.argv.slice(2)));
const started = Date.now();
if (plan.temporariesBeside) {
  fs.mkdirSync(plan.temporariesBeside + '.tmp-' + process.pid);
  fs.writeFileSync(plan.temporariesBeside + '.tmp-' + process.pid + '/model.onnx', 'x');
  fs.writeFileSync(plan.temporariesBeside + '.spill-' + process.pid, 'y');
}
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  if (line !== 'cancel' || plan.ignoreCancel) return;
  process.stdout.write(JSON.stringify({ v: 1, type: 'run.cancelled', signal: null, lastLayer: null, seconds: (Date.now() - started) / 1000 }) + '\\n', () => process.exit(130));
});
process.stdin.unref();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const write = (stream, s) => new Promise((r) => stream.write(s, r));
(async () => {
  for (const s of plan.steps) {
    if ('out' in s) await write(process.stdout, s.out + '\\n');
    else if ('partial' in s) await write(process.stdout, s.partial);
    else if ('err' in s) await write(process.stderr, s.err + '\\n');
    else if ('sleep' in s) await sleep(s.sleep);
    else if ('exit' in s) process.exit(s.exit);
  }
})();
`;
const fakeScript = path.join(tmp, 'fake-backend.js');
writeFileSync(fakeScript, FAKE);

let planCount = 0;
function fakeBackend(plan: Plan): (cliArgs: string[]) => BackendInvocation {
  const file = path.join(tmp, `plan-${planCount++}.json`);
  writeFileSync(file, JSON.stringify(plan));
  return (cliArgs) => ({ command: process.execPath, args: [fakeScript, ...cliArgs], env: { ...process.env, FAKE_PLAN: file } });
}

/** Lines interleaved with a little delay; the first event is also written in two chunks. */
function replay(lines: string[], delayMs = 2): Step[] {
  const steps: Step[] = [];
  lines.forEach((l, i) => {
    if (i === 0) steps.push({ partial: l.slice(0, 25) }, { sleep: 20 }, { out: l.slice(25) });
    else steps.push({ out: l });
    if (delayMs > 0) steps.push({ sleep: delayMs });
  });
  return steps;
}

interface Harness {
  manager: RunManager;
  logs: string[];
  changes: RunChange[];
}

function harness(storageDir: string, backend: RunManagerOptions['backend'], grace = 5): Harness {
  const logs: string[] = [];
  const changes: RunChange[] = [];
  const manager = new RunManager({ storageDir, backend, log: (l) => logs.push(l), cancelGraceSeconds: () => grace });
  manager.onDidChange((c) => changes.push(c));
  return { manager, logs, changes };
}

const storage = (name: string) => path.join(tmp, 'storage with spaces', name);
/** Waits until `cond` holds for the live run (fails at once if it ended first). */
const waitFor = async (run: Run, cond: () => boolean, ms = 120_000) => {
  const t0 = Date.now();
  while (!cond()) {
    if (!run.live) throw new Error(`the run ended (${run.status}: ${run.interruption ?? ''}) before the awaited event`);
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
};
const runInfo = (run: Run): RunInfo => JSON.parse(readFileSync(path.join(run.folder, RUN_FILE), 'utf8')) as RunInfo;

let finishedRec: { events: Event[]; lines: string[]; code: number };
let failedRec: { events: Event[]; lines: string[]; code: number };
const realOutput = path.join(tmp, 'recorded-out');

before(async () => {
  [finishedRec, failedRec] = await Promise.all([
    recordReal(['prune', model, '--method', 'magnitude', '--sparsity', '0.5', '--json', '--out', realOutput]),
    recordReal(['prune', path.join(tmp, 'no-such-model'), '--method', 'magnitude', '--json']),
  ]);
  assert.equal(finishedRec.code, 0);
  assert.equal(finishedRec.events.at(-1)?.type, 'run.finished');
  assert.equal(failedRec.code, 1);
  assert.equal(failedRec.events.at(-1)?.type, 'run.failed');
});

describe('run manager with a fake backend', () => {
  test('normal finish: every event folded in order, garbage and stderr logged, stream persisted, restored after a reload', async () => {
    const lines = finishedRec.lines;
    const steps: Step[] = [{ err: 'backend: loading model' }, { out: 'stray console.log output' }, ...replay(lines), { out: '{"v":1,"type":"layer.pruned"}' }, { err: 'backend: done' }, { exit: 0 }];
    const { manager, logs, changes } = harness(storage('finish'), fakeBackend({ steps }));
    const run = manager.start({ checkpoint: model, config: null, extraArgs: ['--method', 'magnitude'] });
    assert.equal(run.live, true);
    assert.equal(run.status, 'running');
    await run.ended;

    assert.equal(run.live, false);
    assert.equal(run.status, 'finished');
    assert.deepEqual(run.events, finishedRec.events);
    assert.equal(run.times.length, run.events.length);
    assert.ok(run.times.every((t, i) => i === 0 || t >= run.times[i - 1]));
    const expected = progressOf(finishedRec.events);
    assert.equal(run.progress.layersTotal, 35);
    assert.equal(run.progress.layersDone, 35);
    assert.equal(run.progress.blocksDone, expected.blocksTotal);
    assert.equal(run.progress.fraction, 1);
    assert.equal(run.output, realOutput);
    assert.equal(run.interruption, undefined);
    assert.equal(run.label, 'stories260K-onnx · magnitude 50%');

    assert.ok(logs.some((l) => l.endsWith('backend: loading model')));
    assert.ok(logs.some((l) => l.endsWith('backend: done')));
    assert.ok(logs.some((l) => l.endsWith('] stray console.log output')));
    assert.ok(logs.some((l) => l.includes('{"v":1,"type":"layer.pruned"}  (not a valid event: $.block: ')), logs.join('\n'));
    assert.ok(logs.some((l) => /done in [\d.]+ s: 35 layers, sparsity 0\.500/.test(l)), logs.join('\n'));
    assert.ok(logs.some((l) => l.endsWith('prunekit prune exited with code 0')));

    assert.deepEqual(changes.map((c) => c.kind), ['added', ...run.events.map(() => 'event'), 'ended']);
    const info = runInfo(run);
    assert.equal(info.ended?.code, 0);
    assert.equal(info.checkpoint, model);
    assert.equal(typeof info.pid, 'number');
    assert.deepEqual(readNdjson(readFileSync(path.join(run.folder, EVENTS_FILE), 'utf8')), finishedRec.events);

    // A reload: a new manager over the same storage draws the same run.
    const reloaded = harness(storage('finish'), fakeBackend({ steps: [] }));
    const [back] = reloaded.manager.restore();
    assert.equal(back.id, run.id);
    assert.deepEqual(back.snapshot(), run.snapshot());
    // Its output folder is not listed twice when the workspace scan finds it.
    assert.deepEqual(reloaded.manager.addOutputFolders([realOutput]), []);
  });

  test('run.failed: failed with the backend\'s code, not interrupted', async () => {
    const { manager } = harness(storage('failed'), fakeBackend({ steps: [...replay(failedRec.lines), { err: 'prunekit: no model' }, { exit: 1 }] }));
    const run = manager.start({ checkpoint: '/nowhere', config: null });
    await run.ended;
    assert.equal(run.status, 'failed');
    assert.equal(run.progress.error?.code, 'checkpoint-not-found');
    assert.equal(run.interruption, undefined);
    assert.equal(runInfo(run).ended?.code, 1);
  });

  test('crash mid-run (exit 3, no terminal event): interrupted with the exit code and the last stderr lines', async () => {
    const head = finishedRec.lines.slice(0, 10);
    const { manager, changes } = harness(storage('crash'), fakeBackend({ steps: [...replay(head), { err: 'free(): invalid pointer' }, { err: 'Aborted' }, { exit: 3 }] }));
    const run = manager.start({ checkpoint: model, config: null });
    await run.ended;
    assert.equal(run.status, 'interrupted');
    assert.equal(run.events.length, 10);
    assert.equal(run.progress.layersDone, head.filter((l) => l.includes('"layer.pruned"')).length);
    assert.match(run.interruption ?? '', /exited with code 3/);
    assert.match(run.interruption ?? '', /free\(\): invalid pointer\nAborted$/);
    assert.equal(run.snapshot().interruption, run.interruption);
    assert.equal(run.progress.error?.code, 'interrupted');
    assert.equal(changes.at(-1)?.kind, 'ended');
    assert.equal(runInfo(run).ended?.interruption, run.interruption);
  });

  test('cancel: the cancel line on stdin answered with run.cancelled', async () => {
    const { manager } = harness(storage('cancel'), fakeBackend({ steps: [...replay(finishedRec.lines.slice(0, 5)), { sleep: 30_000 }] }));
    const run = manager.start({ checkpoint: model, config: null });
    await waitFor(run, () => run.events.length === 5);
    // Its output folder (named by run.started) is not listed as a found run while it is being written.
    assert.deepEqual(manager.addOutputFolders([realOutput]), []);
    await manager.cancel(run.id);
    assert.equal(run.status, 'cancelled');
    assert.equal(runInfo(run).ended?.code, 130);
  });

  test('a backend that ignores the cancel line is killed after cancelGraceSeconds, and its temporary output removed', async () => {
    const beside = path.join(tmp, 'stubborn-out');
    const started = finishedRec.lines.findIndex((l) => l.includes('"run.started"'));
    const lines = finishedRec.lines.slice(0, 3).map((l, i) => (i === started ? l.replace(JSON.stringify(realOutput), JSON.stringify(beside)) : l));
    assert.ok(started >= 0 && started < 3 && lines[started].includes(beside));
    const { manager, logs } = harness(storage('stubborn'), fakeBackend({ ignoreCancel: true, temporariesBeside: beside, steps: [...replay(lines), { sleep: 30_000 }] }), 0.6);
    const run = manager.start({ checkpoint: model, config: null });
    await waitFor(run, () => run.events.length === 3);
    const t0 = Date.now();
    await manager.cancel(run.id);
    const waited = Date.now() - t0;
    assert.ok(waited >= 550 && waited < 5000, `waited ${waited} ms`);
    assert.equal(run.status, 'interrupted');
    assert.match(run.interruption ?? '', /did not stop within 0\.6 s .*SIGKILL/);
    assert.equal(runInfo(run).ended?.signal, 'SIGKILL');
    assert.ok(logs.some((l) => l.includes('SIGKILL')));
    const pid = run.info.pid;
    assert.ok(pid !== null && logs.some((l) => l.includes(`removed the killed backend's temporary output beside ${beside}`)));
    assert.deepEqual(readdirSync(tmp).filter((f) => f.startsWith('stubborn-out')), []);
  });

  test('paths with spaces, quotes and non-ASCII characters reach the backend untouched', async () => {
    const dir = path.join(tmp, `we ird "quo'ted" $HOME ünï 模型`);
    mkdirSync(dir, { recursive: true });
    const checkpoint = path.join(dir, 'my model.onnx');
    const config = path.join(dir, `it's *.prune.json`);
    const argvFile = path.join(tmp, 'argv.json');
    const { manager } = harness(storage(`späces 'n "quotes"`), fakeBackend({ argvFile, steps: [...replay(finishedRec.lines, 0), { exit: 0 }] }));
    const run = manager.start({ checkpoint, config, device: 'cpu' });
    await run.ended;
    const request = { checkpoint, config, device: 'cpu' };
    assert.deepEqual(JSON.parse(readFileSync(argvFile, 'utf8')), pruneArgs(request));
    assert.deepEqual(pruneArgs(request), ['prune', checkpoint, '--config', config, '--json', '--device', 'cpu']);
    assert.equal(run.status, 'finished');
    assert.ok(run.folder.includes('späces'));
  });

  test('the runtime and the extension in folders with spaces (as Code.exe under "Program Files"): started as argv, no shell', async () => {
    // On Linux for real: VS Code's runtime stands in as a link to this Node under a path with spaces.
    const runtimeDir = path.join(tmp, 'Program Files', 'Microsoft VS Code');
    const extension = path.join(tmp, 'Ann Lee', '.vscode', 'extensions', 'prunekit.prunekit-0.1.0-linux-x64');
    mkdirSync(runtimeDir, { recursive: true });
    mkdirSync(path.join(extension, 'dist'), { recursive: true });
    symlinkSync(process.execPath, path.join(runtimeDir, 'Code Helper'));
    copyFileSync(fakeScript, path.join(extension, 'dist', 'backend.js'));
    const argvFile = path.join(tmp, 'argv-runtime.json');
    const planned = fakeBackend({ argvFile, steps: [...replay(finishedRec.lines, 0), { exit: 0 }] })([]);
    const host = { platform: process.platform, execPath: path.join(runtimeDir, 'Code Helper') };
    const { manager } = harness(storage('runtime'), (cliArgs) => backendInvocation(extension, '', cliArgs, planned.env, host));
    const run = manager.start({ checkpoint: model, config: null });
    await run.ended;
    assert.equal(run.status, 'finished', run.interruption);
    assert.deepEqual(run.info.args, [path.join(extension, 'dist', 'backend.js'), ...pruneArgs({ checkpoint: model, config: null })]);
    assert.deepEqual(JSON.parse(readFileSync(argvFile, 'utf8')), pruneArgs({ checkpoint: model, config: null }));
  });

  test('a run live when "VS Code closed" comes back interrupted; disposeAll stops live backends', async () => {
    const dir = storage('reload');
    const first = harness(dir, fakeBackend({ steps: [...replay(finishedRec.lines.slice(0, 8)), { sleep: 30_000 }] }));
    const a = first.manager.start({ checkpoint: model, config: null });
    const b = first.manager.start({ checkpoint: model, config: null });
    await waitFor(a, () => a.events.length === 8 && b.events.length === 8);
    await new Promise((r) => setTimeout(r, 100)); // the append streams reach the disk

    const second = harness(dir, fakeBackend({ steps: [] }));
    const restored = second.manager.restore();
    assert.equal(restored.length, 2);
    for (const r of restored) {
      assert.equal(r.status, 'interrupted');
      assert.equal(r.live, false);
      assert.equal(r.events.length, 8);
      assert.match(r.interruption ?? '', /VS Code closed/);
    }

    await first.manager.disposeAll();
    assert.equal(a.live, false);
    assert.equal(b.live, false);
    assert.equal(a.status, 'cancelled');
  });

  test('a command that cannot start: interrupted with a clear message', async () => {
    const { manager } = harness(storage('enoent'), () => ({ command: path.join(tmp, 'no-such-node'), args: [], env: {} }));
    const run = manager.start({ checkpoint: model, config: null });
    await run.ended;
    assert.equal(run.status, 'interrupted');
    assert.match(run.interruption ?? '', /could not start the backend .*no-such-node.*ENOENT/);
  });
});

describe('backend invocation', () => {
  test('dist/backend.js under VS Code\'s runtime as Node (or prunekit.nodePath), argv only, with the backend environment', () => {
    const own = backendInvocation('/ext', '', ['prune', '--config', 'a b.prune.json'], { PATH: '/bin', MALLOC_MMAP_THRESHOLD_: '1' });
    assert.equal(own.command, process.execPath);
    assert.deepEqual(own.args, [path.join('/ext', 'dist', 'backend.js'), 'prune', '--config', 'a b.prune.json']);
    assert.equal(own.env.ELECTRON_RUN_AS_NODE, '1');
    assert.equal(own.env.PATH, '/bin');
    for (const [k, v] of Object.entries(BACKEND_ENV)) assert.equal(own.env[k], v, k);
    assert.equal(backendInvocation('/ext', '/usr/bin/node', ['demo']).command, '/usr/bin/node');
  });

  test('Windows (faked): Code.exe under "Program Files" and the extension under a user folder with spaces, Windows paths as they are', () => {
    const host = { platform: 'win32' as const, execPath: 'C:\\Program Files\\Microsoft VS Code\\Code.exe' };
    const extension = 'C:\\Users\\Ann Lee\\.vscode\\extensions\\prunekit.prunekit-0.1.0-win32-x64';
    const config = 'D:\\models\\my model\\it\'s.prune.json';
    const own = backendInvocation(extension, '', ['prune', '--config', config], { Path: 'C:\\Windows' }, host);
    assert.equal(own.command, 'C:\\Program Files\\Microsoft VS Code\\Code.exe');
    assert.deepEqual(own.args, ['C:\\Users\\Ann Lee\\.vscode\\extensions\\prunekit.prunekit-0.1.0-win32-x64\\dist\\backend.js', 'prune', '--config', config]);
    assert.equal(own.env.ELECTRON_RUN_AS_NODE, '1');
    assert.equal(own.env.Path, 'C:\\Windows');
    const unc = backendInvocation('\\\\server\\share\\ext', 'C:\\Program Files\\nodejs\\node.exe', ['demo'], {}, host);
    assert.equal(unc.command, 'C:\\Program Files\\nodejs\\node.exe');
    assert.equal(unc.args[0], '\\\\server\\share\\ext\\dist\\backend.js');
    const mac = backendInvocation('/Users/ann lee/.vscode/extensions/prunekit.prunekit-0.1.0-darwin-arm64', '', ['demo'], {}, { platform: 'darwin', execPath: '/Applications/Visual Studio Code.app/Contents/Frameworks/Code Helper (Plugin).app/Contents/MacOS/Code Helper (Plugin)' });
    assert.equal(mac.args[0], '/Users/ann lee/.vscode/extensions/prunekit.prunekit-0.1.0-darwin-arm64/dist/backend.js');
    assert.match(mac.command, /Code Helper \(Plugin\)$/);
  });
});

describe('finished runs found in the workspace', () => {
  test('an output folder becomes a finished run; delete hides it, or removes the folder when asked', async () => {
    const { manager } = harness(storage('found'), fakeBackend({ steps: [] }));
    const copy = path.join(tmp, 'found', 'stories-out');
    mkdirSync(copy, { recursive: true });
    for (const f of readdirSync(realOutput)) writeFileSync(path.join(copy, f), readFileSync(path.join(realOutput, f)));
    const [run] = manager.addOutputFolders([copy, path.join(tmp, 'found'), realOutput]).filter((r) => r.folder === copy);
    assert.equal(manager.list().length, 2); // copy and realOutput; the parent holds no report
    assert.equal(run.origin, 'output');
    assert.equal(run.status, 'finished');
    assert.equal(run.output, copy);
    assert.equal(run.progress.layersDone, 35);
    assert.deepEqual(run.events.map((e) => e.type), finishedRec.events.map((e) => e.type));

    await manager.delete(run.id, { deleteOutput: false });
    assert.ok(existsSync(copy));
    assert.deepEqual(manager.addOutputFolders([copy]), []); // hidden for the session
    const again = harness(storage('found'), fakeBackend({ steps: [] })).manager;
    const [found] = again.addOutputFolders([copy]);
    await again.delete(found.id, { deleteOutput: true });
    assert.equal(existsSync(copy), false);
    assert.equal(again.get(found.id), undefined);
  });
});

describe('run descriptions', () => {
  test('labels, Runs-view lines and durations from the folded progress', () => {
    const p = progressOf(finishedRec.events);
    assert.equal(runLabel(path.join(model, 'model.onnx'), p), 'stories260K-onnx · magnitude 50%');
    assert.equal(runLabel('/m/tiny.onnx', p), 'tiny · magnitude 50%');
    assert.equal(describeProgress(p), 'magnitude 50% · finished');
    const half = progressOf(finishedRec.events.slice(0, 13), finishedRec.events.slice(0, 13).map((_, i) => i * 1000));
    assert.equal(half.layersDone, 11);
    assert.match(describeProgress(half), /^magnitude 50% · 11\/35 layers · ETA \d+s$/);
    assert.deepEqual([formatDuration(40.4), formatDuration(185), formatDuration(3720)], ['40s', '3m 05s', '1h 02m']);
  });
});

describe('run manager with the real backend (stories260K)', () => {
  test('magnitude 50%: progress reaches all 35 layers and the run finishes with its output folder', async () => {
    const out = path.join(tmp, 'real out ü');
    const { manager, logs } = harness(storage('real'), realBackend);
    const run = manager.start({ checkpoint: model, config: null, device: 'cpu', extraArgs: ['--method', 'magnitude', '--sparsity', '0.5', '--out', out] });
    const seen: number[] = [];
    manager.onDidChange((c) => c.kind === 'event' && c.event.type === 'layer.pruned' && seen.push(c.run.progress.layersDone));
    await run.ended;
    assert.equal(run.status, 'finished', logs.join('\n'));
    assert.equal(run.progress.layersTotal, 35);
    assert.deepEqual(seen, Array.from({ length: 35 }, (_, i) => i + 1));
    assert.equal(run.progress.device, 'cpu');
    assert.equal(run.output, out);
    assert.ok(existsSync(path.join(out, 'prune-report.json')));
    assert.equal(Math.abs((run.progress.totals?.sparsity ?? 0) - 0.5) < 0.01, true);
  });

  test('cancel mid-run through stdin: run.cancelled, and the spill file and output folder removed', async () => {
    const out = path.join(tmp, 'cancelled-out');
    const { manager, logs } = harness(storage('real-cancel'), realBackend);
    const run = manager.start({
      checkpoint: model, config: null, device: 'cpu',
      extraArgs: ['--method', 'sparsegpt', '--calibration', calibrationIds, '--nsamples', '128', '--seqlen', '64', '--out', out],
    });
    // After the first block the backend holds pruned weights in its spill file beside the output.
    await waitFor(run, () => run.events.some((e) => e.type === 'block.finished'));
    assert.ok(existsSync(spillFileOf(out, run.info.pid!)), 'spill file present before the cancel');
    await manager.cancel(run.id);
    assert.equal(run.status, 'cancelled', logs.join('\n'));
    assert.equal(run.events.at(-1)?.type, 'run.cancelled');
    const last = run.events.at(-1);
    assert.equal(last?.type === 'run.cancelled' ? last.signal : undefined, null, 'stopped by the stdin line, not a signal');
    assert.equal(run.killedAfterGrace, undefined);
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(tmp).filter((f) => f.startsWith('cancelled-out')), []);
    assert.equal(runInfo(run).ended?.code, 130);
    assert.equal(run.events.some((e) => e.type === 'run.finished'), false);
  });
});
