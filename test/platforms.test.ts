// What differs on macOS and Windows, tested here on Linux with the platform faked: the output folder put into
// place where a rename cannot replace a folder (Windows), `auto`'s device order (Metal on macOS, CUDA then D3D12
// on Windows), config paths written on Windows (backslashes, drive letters, UNC), and the stdin cancel line as a
// Windows process writes it. The real processes (spawn, cancel) are tested in runManager.test.ts.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, test } from 'node:test';
import { cancelOnRequest } from '../src/backend/cli/cancelOnRequest';
import { FolderRenames, writeFolder } from '../src/backend/formats/atomicFolder';
import { CheckpointError } from '../src/backend/formats/errors';
import { GraphBuilder } from '../src/backend/onnx/graph';
import { DataType } from '../src/backend/onnx/proto';
import { autoDeviceOrder, DeviceProbe, Engine, f32 } from '../src/backend/onnx/session';
import { pathKey } from '../src/extension/backendInvocation';
import { modelName } from '../src/extension/runs/describe';
import { resolveConfig } from '../src/protocol/config';
import { fixturesDir, repoRoot } from './helpers/realLayers';

const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-platforms-'));
after(() => rmSync(work, { recursive: true, force: true }));

// ------------------------------------------------------------------------------------------------------------

/** Windows' rename: a folder is never replaced (EPERM), a file only when it is not a folder; `busy` more calls
 *  fail with EBUSY first (a scanner holding a file), as they do there for milliseconds. */
function windowsRenames(busy = 0): FolderRenames & { calls: [string, string][] } {
  const calls: [string, string][] = [];
  return {
    platform: 'win32',
    calls,
    async rename(from, to) {
      calls.push([from, to]);
      if (busy-- > 0) throw Object.assign(new Error(`EBUSY: resource busy or locked, rename '${from}' -> '${to}'`), { code: 'EBUSY' });
      if (existsSync(to)) throw Object.assign(new Error(`EPERM: operation not permitted, rename '${from}' -> '${to}'`), { code: 'EPERM' });
      await rename(from, to);
    },
    rm: (target) => rm(target, { recursive: true, force: true }),
  };
}

const MARKER = 'model.onnx';

function writeModelFolder(out: string, text: string, renames: FolderRenames) {
  return writeFolder(out, { overwrite: true, marker: MARKER, chunkSize: 4, renames }, async (tmp, sink) => {
    await sink.file(path.join(tmp, MARKER), false, (write) => write(new TextEncoder().encode(text)));
    return text.length;
  });
}

describe('output folder replaced on Windows (a rename onto an existing folder fails there)', () => {
  test('--overwrite: the old folder moved aside, the new one renamed in, the old one removed', async () => {
    const out = path.join(work, 'overwrite', 'out');
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, MARKER), 'old model');
    writeFileSync(path.join(out, 'stale.txt'), 'from the old run');
    const fs = windowsRenames();
    const { result, warnings } = await writeModelFolder(out, 'new model', fs);
    assert.equal(result, 9);
    assert.deepEqual(warnings, []);
    assert.equal(readFileSync(path.join(out, MARKER), 'utf8'), 'new model');
    assert.deepEqual(readdirSync(out), [MARKER]);
    assert.deepEqual(readdirSync(path.dirname(out)), ['out']);
    assert.deepEqual(fs.calls.map(([a, b]) => [path.basename(a), path.basename(b)]), [['out', `out.old-${process.pid}`], [`out.tmp-${process.pid}`, 'out']]);
  });

  test('a folder busy for a moment (EBUSY) is retried on Windows; elsewhere the error is reported at once', async () => {
    const out = path.join(work, 'busy', 'out');
    const fs = windowsRenames(2);
    await writeModelFolder(out, 'model', fs);
    assert.equal(readFileSync(path.join(out, MARKER), 'utf8'), 'model');
    assert.equal(fs.calls.length, 3);

    const linux = { ...windowsRenames(1), platform: 'linux' as const };
    const other = path.join(work, 'busy', 'other');
    await assert.rejects(writeModelFolder(other, 'model', linux), (e: unknown) => e instanceof CheckpointError && e.code === 'write-failed' && /EBUSY/.test(e.message));
    assert.deepEqual(readdirSync(path.dirname(other)).sort(), ['out'], 'no temporary folder left');
  });

  test('when the new folder cannot be renamed in, the previous output is put back as it was', async () => {
    const out = path.join(work, 'restore', 'out');
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, MARKER), 'old model');
    const fs = windowsRenames();
    const failing: FolderRenames = {
      ...fs,
      rename: (from, to) => (from.includes('.tmp-') ? Promise.reject(Object.assign(new Error('EXDEV: cross-device link not permitted'), { code: 'EXDEV' })) : fs.rename(from, to)),
    };
    await assert.rejects(writeModelFolder(out, 'new model', failing), /EXDEV/);
    assert.equal(readFileSync(path.join(out, MARKER), 'utf8'), 'old model');
    assert.deepEqual(readdirSync(path.dirname(out)), ['out']);
  });
});

// ------------------------------------------------------------------------------------------------------------

const probe = (platform: NodeJS.Platform, cuda: boolean, gpu: boolean): DeviceProbe => ({
  platform, cudaProviderInstalled: () => cuda,
  webgpuAdapter: () => Promise.resolve({ name: gpu ? 'a GPU' : 'llvmpipe (LLVM 15.0.6, 256 bits)', hardware: gpu }),
  webgpuProblem: () => Promise.resolve(null), cudaProblem: () => Promise.resolve(null), cudaDeviceName: () => Promise.resolve(null),
});

describe('device `auto` by platform', () => {
  test('macOS: WebGPU on Metal before the CPU, never CUDA', async () => {
    assert.deepEqual(await autoDeviceOrder(probe('darwin', true, true)), { order: ['webgpu', 'cpu'], skipped: ['cuda: not available on macOS'] });
  });

  test('Windows: CUDA when its provider is installed, then WebGPU on D3D12, then the CPU', async () => {
    assert.deepEqual((await autoDeviceOrder(probe('win32', true, true))).order, ['cuda:0', 'webgpu', 'cpu']);
    const noCuda = await autoDeviceOrder(probe('win32', false, true));
    assert.deepEqual(noCuda.order, ['webgpu', 'cpu']);
    assert.match(noCuda.skipped[0], /^cuda: provider libraries not installed/);
  });

  test('Linux: CUDA, WebGPU only on a hardware adapter (never a software one), the CPU', async () => {
    assert.deepEqual(await autoDeviceOrder(probe('linux', true, false)), { order: ['cuda:0', 'cpu'], skipped: ['webgpu: only a software adapter, llvmpipe (LLVM 15.0.6, 256 bits) (slower than the CPU provider)'] });
  });

  test('a device in the order that cannot load is skipped with its reason, and the graph runs on the next', async () => {
    // On this machine (no CUDA provider libraries), told they are installed: onnxruntime refuses CUDA, the CPU runs.
    const engine = new Engine({ device: 'auto', threads: 1 }, probe('linux', true, false));
    const g = new GraphBuilder('add');
    const x = g.input('x', DataType.FLOAT, [2]);
    g.output(g.op('Add', [x, x]), 'y', DataType.FLOAT, [2]);
    const kernel = await engine.kernel(g.build());
    const { y } = await kernel.run({ x: f32(new Float32Array([1.5, -2]), [2]) });
    assert.deepEqual(Array.from(y.data as Float32Array), [3, -4]);
    assert.equal(engine.device, 'cpu');
    assert.match(engine.fallbacks.find((f) => f.startsWith('cuda:0:')) ?? '', /^cuda:0: \S/);
    await engine.release();
  });
});

// ------------------------------------------------------------------------------------------------------------

describe('paths written on Windows', () => {
  test('a config in a Windows folder: relative paths with either slash resolved against it, drive letters and UNC kept', () => {
    const c = resolveConfig({
      checkpoint: 'models\\stories 260K\\model.onnx', output: '..\\pruned/out', tokenizer: 'E:/tok/tokenizer.json',
      calibration: { path: '\\\\nas\\data\\calib.txt' }, evaluation: { path: './eval\\valid.txt' },
    }, 'C:\\Users\\Ann Lee\\work');
    assert.equal(c.checkpoint, 'C:\\Users\\Ann Lee\\work\\models\\stories 260K\\model.onnx');
    assert.equal(c.output, 'C:\\Users\\Ann Lee\\pruned\\out');
    assert.equal(c.tokenizer, 'E:\\tok\\tokenizer.json');
    assert.equal(c.calibration?.path, '\\\\nas\\data\\calib.txt');
    assert.equal(c.evaluation && c.evaluation.path, 'C:\\Users\\Ann Lee\\work\\eval\\valid.txt');

    const unc = resolveConfig({ checkpoint: 'llama', method: 'magnitude' }, '\\\\server\\share\\cfg');
    assert.equal(unc.checkpoint, '\\\\server\\share\\cfg\\llama');
    assert.equal(unc.output, '\\\\server\\share\\cfg\\llama-magnitude-50');
    assert.equal(resolveConfig({ checkpoint: '..\\..\\..\\m', method: 'magnitude' }, '\\\\server\\share\\cfg').checkpoint, '\\\\server\\share\\m');
  });

  test('one folder spelled two ways (VS Code\'s fsPath "c:\\", Node\'s "C:\\", either slash) is one found run on Windows only', () => {
    assert.equal(pathKey('c:\\Users\\Ann Lee\\out', 'win32'), pathKey('C:/Users/ann lee/out/', 'win32'));
    assert.equal(pathKey('\\\\Server\\Share\\out', 'win32'), pathKey('\\\\server\\share\\x\\..\\OUT', 'win32'));
    assert.notEqual(pathKey('/home/ann/Out', 'linux'), pathKey('/home/ann/out', 'linux'));
    assert.equal(pathKey('/home/ann/out/', 'darwin'), '/home/ann/out');
  });

  test('events naming Windows paths: the run is labelled by the model, not the whole path', () => {
    assert.equal(modelName('C:\\Users\\Ann Lee\\models\\stories260K\\model.onnx'), 'stories260K');
    assert.equal(modelName('\\\\server\\share\\llama-7b.onnx'), 'llama-7b');
    assert.equal(modelName('D:/models/qwen2'), 'qwen2');
  });

  test('the CLI resolves a config\'s relative paths against the config\'s folder, not the working directory', () => {
    const dir = path.join(work, 'config dir');
    mkdirSync(path.join(dir, 'data'), { recursive: true });
    writeFileSync(path.join(dir, 'data', 'eval.txt'), readFileSync(path.join(fixturesDir, 'data', 'tinystories_valid_head.txt')).subarray(0, 20_000));
    const config = path.join(dir, 'run.prune.json');
    writeFileSync(config, JSON.stringify({
      checkpoint: path.relative(dir, path.join(fixturesDir, 'stories260K-onnx')), output: 'out', method: 'magnitude',
      evaluation: { path: 'data\\eval.txt', maxWindows: 2, seqlen: 64 },
    }));
    const cli = path.join(repoRoot, 'src', 'backend', 'cli', 'main.ts');
    const stdout = execFileSync(process.execPath, ['--import', 'tsx', cli, 'prune', '--config', config, '--device', 'cpu', '--json'], { cwd: repoRoot, encoding: 'utf8' });
    const finished = stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; output?: string }).at(-1);
    assert.equal(finished?.type, 'run.finished', stdout.slice(-1000));
    assert.equal(finished?.output, path.join(dir, 'out'));
    assert.ok(statSync(path.join(dir, 'out', 'model.onnx')).size > 0);
  });
});

// ------------------------------------------------------------------------------------------------------------

describe('the cancel line on stdin', () => {
  test('a CRLF line (a Windows writer), split across chunks, cancels once; other lines and the end of input do not', async () => {
    const input = new PassThrough();
    let cancels = 0;
    const stop = cancelOnRequest(input, () => cancels++);
    input.write('hello\r\n');
    input.write('can');
    assert.equal(cancels, 0);
    input.write('cel\r\n');
    input.end();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(cancels, 1);
    stop();
  });
});
