// Broken and hostile inputs (issue 12, classes 1, 4 and 5): each is built here from the fixtures in a temporary
// folder and run through the CLI bundle. Every failure must be one run.failed with a specific code and a message
// naming the problem, in under 10 s and 1 GB, with no input changed and nothing left at or beside --out.
//
//   node --import tsx --test test/hostile.test.ts

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeModel, encodeModel } from '../src/backend/onnx/proto';
import { ErrorCode, EventOf } from '../src/protocol/events';
import { besideOut, bundleCli, CliRun, hashTree, readOnlyFolder, runCli } from './helpers/cliProbe';
import { fixturesDir } from './helpers/realLayers';

const onnxDir = path.join(fixturesDir, 'stories260K-onnx');
const hfDir = path.join(fixturesDir, 'stories260K-hf');
const text = path.join(fixturesDir, 'data', 'tinystories_valid_head.txt');
const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-hostile-'));
let cli = '';

before(async () => {
  cli = await bundleCli('hostile-test');
});
after(() => rmSync(work, { recursive: true, force: true }));

/** A fresh folder for one case. */
function caseDir(name: string): string {
  const d = path.join(work, name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
  return d;
}

/** A copy of the stories260K ONNX folder with `edit` applied (the fixture itself is never touched). */
function onnxCopy(name: string, edit: (dir: string) => void = () => undefined): string {
  const d = path.join(caseDir(name), 'model');
  cpSync(onnxDir, d, { recursive: true });
  edit(d);
  return d;
}

function writeIds(file: string, ids: unknown): string {
  writeFileSync(file, typeof ids === 'string' ? ids : JSON.stringify(ids));
  return file;
}

interface Case {
  what: string;
  /** Builds the inputs; returns the CLI arguments, the inputs to hash and the --out to check (if any). */
  setup(dir: string): { args: string[]; inputs: string[]; out?: string; release?(): void };
  code: ErrorCode;
  exit?: number;
  /** What the message must name. */
  mentions: (dir: string) => string | RegExp;
}

const small = ['--method', 'magnitude', '--nsamples', '2', '--seqlen', '16'];
/** Calibration on the first 8 KB of the text: tokenizing all of it takes seconds on a loaded machine. */
const shortText = path.join(work, 'short.txt');
writeFileSync(shortText, readFileSync(text).subarray(0, 8192));
const tiny = ['--calibration', shortText, ...small];

const CASES: Case[] = [
  // ---- class 1: ordinary mistakes (each once reached the user as `internal` with a stack)
  { what: '--config that does not exist', code: 'file-not-found', mentions: (d) => path.join(d, 'nope.prune.json'),
    setup: (d) => ({ args: ['prune', '--config', path.join(d, 'nope.prune.json')], inputs: [] }) },
  { what: '--config that is a folder', code: 'not-a-file', mentions: (d) => path.join(d, 'cfg'),
    setup: (d) => (mkdirSync(path.join(d, 'cfg')), { args: ['prune', '--config', path.join(d, 'cfg')], inputs: [path.join(d, 'cfg')] }) },
  { what: '--config that is not JSON', code: 'config-invalid', mentions: () => /JSON|expected|\$/i,
    setup: (d) => ({ args: ['prune', '--config', writeIds(path.join(d, 'x.prune.json'), '{ "checkpoint": ')], inputs: [path.join(d, 'x.prune.json')] }) },
  { what: 'checkpoint that does not exist', code: 'checkpoint-not-found', mentions: (d) => path.join(d, 'none'),
    setup: (d) => ({ args: ['prune', path.join(d, 'none'), '--method', 'magnitude', '--out', path.join(d, 'out')], inputs: [], out: path.join(d, 'out') }) },
  { what: 'checkpoint folder without a model', code: 'checkpoint-not-found', mentions: (d) => path.join(d, 'empty'),
    setup: (d) => (mkdirSync(path.join(d, 'empty')), { args: ['prune', path.join(d, 'empty'), '--method', 'magnitude', '--out', path.join(d, 'out')], inputs: [path.join(d, 'empty')], out: path.join(d, 'out') }) },
  { what: 'model.onnx truncated', code: 'checkpoint-invalid', mentions: () => 'model.onnx',
    setup: () => {
      const m = onnxCopy('trunc', (m) => writeFileSync(path.join(m, 'model.onnx'), readFileSync(path.join(m, 'model.onnx')).subarray(0, 3000)));
      return { args: ['prune', m, '--calibration', shortText, ...small, '--out', `${m}-out`], inputs: [m], out: `${m}-out` };
    } },
  { what: 'ONNX graph with an unknown operator', code: 'checkpoint-invalid', mentions: () => /NoSuchOp/,
    setup: () => {
      const m = onnxCopy('unknown-op', (m) => {
        const model = decodeModel(readFileSync(path.join(m, 'model.onnx')));
        const n = model.graph.node.find((x) => x.opType === 'Softmax');
        assert.ok(n, 'the fixture has a Softmax');
        n.opType = 'NoSuchOp';
        writeFileSync(path.join(m, 'model.onnx'), encodeModel(model));
      });
      return { args: ['prune', m, '--calibration', shortText, ...small, '--out', `${m}-out`], inputs: [m], out: `${m}-out` };
    } },
  { what: 'calibration path that is a folder', code: 'not-a-file', mentions: (d) => path.join(d, 'texts'),
    setup: (d) => (mkdirSync(path.join(d, 'texts')), { args: ['prune', onnxDir, '--calibration', path.join(d, 'texts'), '--out', path.join(d, 'out')], inputs: [onnxDir], out: path.join(d, 'out') }) },
  { what: 'evaluation path that is a folder', code: 'not-a-file', mentions: (d) => path.join(d, 'texts'),
    setup: (d) => (mkdirSync(path.join(d, 'texts')), { args: ['prune', onnxDir, '--calibration', text, '--eval', path.join(d, 'texts'), ...small, '--out', path.join(d, 'out')], inputs: [onnxDir], out: path.join(d, 'out') }) },
  { what: 'calibration file missing', code: 'data-not-found', mentions: (d) => path.join(d, 'none.txt'),
    setup: (d) => ({ args: ['prune', onnxDir, '--calibration', path.join(d, 'none.txt'), '--out', path.join(d, 'out')], inputs: [onnxDir], out: path.join(d, 'out') }) },
  { what: 'evaluation file missing', code: 'data-not-found', mentions: (d) => path.join(d, 'none.txt'),
    setup: (d) => ({ args: ['prune', onnxDir, '--calibration', text, '--eval', path.join(d, 'none.txt'), '--out', path.join(d, 'out')], inputs: [onnxDir], out: path.join(d, 'out') }) },
  { what: '--out whose parent is a file', code: 'not-a-folder', mentions: (d) => path.join(d, 'file'),
    setup: (d) => (writeFileSync(path.join(d, 'file'), 'x'), { args: ['prune', onnxDir, '--calibration', text, '--out', path.join(d, 'file', 'out')], inputs: [onnxDir, path.join(d, 'file')], out: path.join(d, 'file', 'out') }) },
  { what: '--out two levels under a file', code: 'not-a-folder', mentions: (d) => path.join(d, 'file'),
    setup: (d) => (writeFileSync(path.join(d, 'file'), 'x'), { args: ['prune', onnxDir, '--calibration', text, '--out', path.join(d, 'file', 'a', 'b')], inputs: [onnxDir, path.join(d, 'file')] }) },
  { what: '--out on a read-only file system', code: 'write-failed', mentions: (d) => path.join(d, 'ro'),
    setup: (d) => {
      mkdirSync(path.join(d, 'ro'));
      const ro = readOnlyFolder(path.join(d, 'ro'));
      return { args: ['prune', onnxDir, '--calibration', text, '--out', path.join(d, 'ro', 'out')], inputs: [onnxDir], out: path.join(d, 'ro', 'out'), release: ro.release };
    } },
  { what: 'tokenizer.json that is not JSON', code: 'tokenizer-invalid', mentions: () => 'tokenizer.json',
    setup: () => {
      const m = onnxCopy('tok-corrupt', (m) => writeFileSync(path.join(m, 'tokenizer.json'), '{"model": {"vocab": [1, 2'));
      return { args: ['prune', m, '--calibration', shortText, ...small, '--out', `${m}-out`], inputs: [m], out: `${m}-out` };
    } },
  { what: 'tokenizer.json of the wrong shape', code: 'tokenizer-invalid', mentions: () => 'tokenizer.json',
    setup: () => {
      const m = onnxCopy('tok-shape', (m) => writeFileSync(path.join(m, 'tokenizer.json'), JSON.stringify({ model: { type: 'BPE', vocab: 5 } })));
      return { args: ['prune', m, '--calibration', shortText, ...small, '--out', `${m}-out`], inputs: [m], out: `${m}-out` };
    } },
  { what: 'tokenizer.json nested 100,000 deep', code: 'tokenizer-invalid', mentions: () => 'tokenizer.json',
    setup: () => {
      const m = onnxCopy('tok-deep', (m) => writeFileSync(path.join(m, 'tokenizer.json'), `{"model": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`));
      return { args: ['prune', m, '--calibration', shortText, ...small, '--out', `${m}-out`], inputs: [m], out: `${m}-out` };
    } },
  { what: 'tokenizer.json that is a folder', code: 'tokenizer-invalid', mentions: () => 'tokenizer.json',
    setup: () => {
      const m = onnxCopy('tok-dir', (m) => (rmSync(path.join(m, 'tokenizer.json')), mkdirSync(path.join(m, 'tokenizer.json'))));
      return { args: ['prune', m, '--calibration', shortText, ...small, '--out', `${m}-out`], inputs: [m], out: `${m}-out` };
    } },
  { what: 'no tokenizer.json for text data', code: 'tokenizer-missing', mentions: () => 'tokenizer.json',
    setup: () => {
      const m = onnxCopy('tok-none', (m) => rmSync(path.join(m, 'tokenizer.json')));
      return { args: ['prune', m, '--calibration', shortText, ...small, '--out', `${m}-out`], inputs: [m], out: `${m}-out` };
    } },
  { what: 'token ids beyond the vocabulary', code: 'token-out-of-range', mentions: () => /512.*position 3|position 3.*512/,
    setup: (d) => ({ args: ['prune', onnxDir, '--calibration', writeIds(path.join(d, 'ids.json'), [1, 2, 3, 512, 4, 5, 6, 7]), ...small, '--out', path.join(d, 'out')], inputs: [onnxDir, path.join(d, 'ids.json')], out: path.join(d, 'out') }) },
  { what: 'blockPattern matching nothing', code: 'layers-unmatched', mentions: () => '$.blockPattern',
    setup: (d) => {
      const f = writeIds(path.join(d, 'x.prune.json'), { checkpoint: onnxDir, method: 'magnitude', blockPattern: 'decoder\\.(\\d+)/', output: path.join(d, 'out') });
      return { args: ['prune', '--config', f], inputs: [onnxDir, f], out: path.join(d, 'out') };
    } },
  { what: 'blockPattern without a capture group', code: 'config-invalid', mentions: () => '$.blockPattern',
    setup: (d) => {
      const f = writeIds(path.join(d, 'x.prune.json'), { checkpoint: onnxDir, method: 'magnitude', blockPattern: 'layers\\.\\d+/', output: path.join(d, 'out') });
      return { args: ['prune', '--config', f], inputs: [onnxDir, f], out: path.join(d, 'out') };
    } },
  { what: 'an unknown flag', code: 'bad-argument', exit: 2, mentions: () => '--bogus',
    setup: (d) => ({ args: ['prune', onnxDir, '--bogus', '--out', path.join(d, 'out')], inputs: [onnxDir], out: path.join(d, 'out') }) },
  { what: '--sparsity -0.1', code: 'bad-argument', exit: 2, mentions: () => '--sparsity',
    setup: (d) => ({ args: ['prune', onnxDir, '--sparsity', '-0.1', '--out', path.join(d, 'out')], inputs: [onnxDir], out: path.join(d, 'out') }) },
  { what: '--sparsity=-0.1', code: 'config-invalid', mentions: () => '$.sparsity',
    setup: (d) => ({ args: ['prune', onnxDir, '--sparsity=-0.1', '--out', path.join(d, 'out')], inputs: [onnxDir], out: path.join(d, 'out') }) },
  { what: '--nsamples abc', code: 'config-invalid', mentions: () => '$.calibration.nsamples',
    setup: (d) => ({ args: ['prune', onnxDir, '--calibration', text, '--nsamples', 'abc', '--out', path.join(d, 'out')], inputs: [onnxDir], out: path.join(d, 'out') }) },
  { what: '--method that does not exist', code: 'config-invalid', mentions: () => '$.method',
    setup: (d) => ({ args: ['prune', onnxDir, '--method', 'obs', '--out', path.join(d, 'out')], inputs: [onnxDir], out: path.join(d, 'out') }) },
  { what: 'an unknown command', code: 'bad-argument', exit: 2, mentions: () => 'prnue',
    setup: () => ({ args: ['prnue', onnxDir], inputs: [onnxDir] }) },
  { what: 'inspect without a checkpoint', code: 'bad-argument', exit: 2, mentions: () => 'inspect',
    setup: () => ({ args: ['inspect'], inputs: [] }) },
  { what: 'inspect of a missing checkpoint', code: 'checkpoint-not-found', mentions: (d) => path.join(d, 'none'),
    setup: (d) => ({ args: ['inspect', path.join(d, 'none')], inputs: [] }) },
  { what: 'Hugging Face config.json that is not JSON', code: 'checkpoint-invalid', mentions: () => 'config.json',
    setup: (d) => {
      const m = path.join(d, 'hf');
      cpSync(hfDir, m, { recursive: true });
      writeFileSync(path.join(m, 'config.json'), '{"model_type": "llama",');
      return { args: ['prune', m, ...tiny, '--out', `${m}-out`], inputs: [m], out: `${m}-out` };
    } },

  // ---- class 4: odd input
  { what: 'token id 2³² + 1 (would wrap to 1)', code: 'token-out-of-range', mentions: () => /4294967297.*position 2/,
    setup: (d) => ({ args: ['prune', onnxDir, '--calibration', writeIds(path.join(d, 'ids.json'), '[1, 2, 4294967297, 5, 6, 7, 8, 9]'), ...small, '--out', path.join(d, 'out')], inputs: [onnxDir, path.join(d, 'ids.json')], out: path.join(d, 'out') }) },
  { what: 'token id 2³¹ (would wrap negative)', code: 'token-out-of-range', mentions: () => /2147483648.*position 0/,
    setup: (d) => ({ args: ['prune', onnxDir, '--calibration', writeIds(path.join(d, 'ids.json'), [2 ** 31, 1, 2, 3, 4]), ...small, '--out', path.join(d, 'out')], inputs: [onnxDir, path.join(d, 'ids.json')], out: path.join(d, 'out') }) },
  { what: 'a negative token id', code: 'token-out-of-range', mentions: () => /-3.*position 1/,
    setup: (d) => ({ args: ['prune', onnxDir, '--calibration', writeIds(path.join(d, 'ids.json'), [1, -3, 2, 3, 4]), ...small, '--out', path.join(d, 'out')], inputs: [onnxDir, path.join(d, 'ids.json')], out: path.join(d, 'out') }) },
  { what: 'a fractional token id', code: 'token-out-of-range', mentions: () => /1\.5.*position 4/,
    setup: (d) => ({ args: ['prune', onnxDir, '--calibration', writeIds(path.join(d, 'ids.json'), { ids: [1, 2, 3, 4, 1.5] }), ...small, '--out', path.join(d, 'out')], inputs: [onnxDir, path.join(d, 'ids.json')], out: path.join(d, 'out') }) },
  { what: 'a token id given as a string', code: 'token-out-of-range', mentions: () => /"7".*position 0/,
    setup: (d) => ({ args: ['prune', onnxDir, '--calibration', writeIds(path.join(d, 'ids.json'), ['7', 1, 2]), ...small, '--out', path.join(d, 'out')], inputs: [onnxDir, path.join(d, 'ids.json')], out: path.join(d, 'out') }) },
  { what: 'a token-id file that is an object without ids', code: 'data-invalid', mentions: () => 'ids.json',
    setup: (d) => ({ args: ['prune', onnxDir, '--calibration', writeIds(path.join(d, 'ids.json'), { tokens: [1, 2] }), ...small, '--out', path.join(d, 'out')], inputs: [onnxDir, path.join(d, 'ids.json')], out: path.join(d, 'out') }) },
  { what: 'a token-id file nested 100,000 deep', code: 'token-out-of-range', mentions: () => /ids\.json: token id an array at position 0/,
    setup: (d) => ({ args: ['prune', onnxDir, '--calibration', writeIds(path.join(d, 'ids.json'), `${'['.repeat(100_000)}${']'.repeat(100_000)}`), ...small, '--out', path.join(d, 'out')], inputs: [onnxDir, path.join(d, 'ids.json')], out: path.join(d, 'out') }) },
  { what: 'binary calibration text (NUL bytes)', code: 'data-invalid', mentions: () => /bin\.txt.*NUL/,
    setup: (d) => {
      const f = path.join(d, 'bin.txt');
      writeFileSync(f, Buffer.concat([readFileSync(text).subarray(0, 4000), Buffer.from([0, 1, 2, 0, 255])]));
      return { args: ['prune', onnxDir, '--calibration', f, ...small, '--out', path.join(d, 'out')], inputs: [onnxDir, f], out: path.join(d, 'out') };
    } },
  { what: 'binary evaluation text (an ONNX file named .txt)', code: 'data-invalid', mentions: () => /model\.txt.*NUL/,
    setup: (d) => {
      const f = path.join(d, 'model.txt');
      cpSync(path.join(onnxDir, 'model.onnx'), f);
      return { args: ['prune', onnxDir, ...tiny, '--eval', f, '--out', path.join(d, 'out')], inputs: [onnxDir, f], out: path.join(d, 'out') };
    } },
  { what: 'an existing --out without --overwrite (refused before any work)', code: 'output-exists', mentions: (d) => path.join(d, 'out'),
    setup: (d) => {
      mkdirSync(path.join(d, 'out'));
      writeFileSync(path.join(d, 'out', 'keep.txt'), 'mine');
      return { args: ['prune', onnxDir, '--calibration', text, '--nsamples', '64', '--out', path.join(d, 'out')], inputs: [onnxDir, path.join(d, 'out')] };
    } },
  { what: 'an existing --out that is a file, with --overwrite', code: 'output-exists', mentions: (d) => path.join(d, 'out'),
    setup: (d) => {
      writeFileSync(path.join(d, 'out'), 'not a folder');
      return { args: ['prune', onnxDir, ...tiny, '--overwrite', '--out', path.join(d, 'out')], inputs: [onnxDir, path.join(d, 'out')] };
    } },
];

describe('broken and hostile inputs: one run.failed each, fast, bounded, nothing changed or left', () => {
  test(`the corpus holds at least 35 cases (${CASES.length})`, () => assert.ok(CASES.length >= 35));

  for (const [i, c] of CASES.entries()) {
    test(`${c.what} → ${c.code}`, () => {
      const dir = caseDir(`case-${i}`);
      const s = c.setup(dir);
      const before = s.inputs.map(hashTree);
      let r: CliRun;
      try {
        r = runCli(cli, [...s.args, '--json'], { cwd: dir });
      } finally {
        s.release?.();
      }
      assert.equal(r.code, c.exit ?? 1, r.stderr);
      const failed = r.events.filter((e) => e.type === 'run.failed') as EventOf<'run.failed'>[];
      assert.equal(failed.length, 1, `one run.failed: ${JSON.stringify(r.events)} ${r.stderr}`);
      const f = failed[0];
      assert.equal(r.events[r.events.length - 1], f, 'run.failed is the last event');
      assert.equal(f.code, c.code, f.message);
      const m = c.mentions(dir);
      const said = JSON.stringify(f);
      assert.ok(typeof m === 'string' ? said.includes(JSON.stringify(m).slice(1, -1)) : m.test(f.message), `${f.message} should name ${m}`);
      assert.ok(!/\n|    at /.test(f.message), `one line, no stack: ${f.message}`);
      assert.ok(r.seconds < 10, `${r.seconds.toFixed(1)} s`);
      assert.ok(r.peakRss < 1024 ** 3, `peak RSS ${(r.peakRss / 2 ** 20).toFixed(0)} MB`);
      assert.deepEqual(s.inputs.map(hashTree), before, 'inputs unchanged');
      if (s.out) assert.deepEqual(besideOut(s.out), [], 'nothing at or beside --out');
      if (c.code === 'output-exists') assert.equal(r.events.filter((e) => e.type === 'data.loaded').length, 0, 'refused before any data was read');
    });
  }

  test('--debug adds the stack to the message (and only then)', () => {
    const d = caseDir('debug');
    const plain = runCli(cli, ['prune', '--config', path.join(d, 'x.json'), '--json']);
    const debug = runCli(cli, ['prune', '--config', path.join(d, 'x.json'), '--json', '--debug']);
    const [p, q] = [plain, debug].map((r) => r.events[r.events.length - 1] as EventOf<'run.failed'>);
    assert.equal(p.code, 'file-not-found');
    assert.equal(q.code, 'file-not-found');
    assert.ok(!p.message.includes('    at '));
    assert.ok(q.message.startsWith(p.message) && q.message.includes('    at '), q.message);
  });

  test('without --json a failure is one line on stderr (and its hint), nothing on stdout', () => {
    const d = caseDir('text');
    const r = spawnSync(process.execPath, [cli, 'prune', '--config', path.join(d, 'cfg')], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`^prunekit: ${path.join(d, 'cfg').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: no such file or folder\n  [^\n]+\n$`));
  });
});

describe('odd but usable input: a warning, and the run goes on', () => {
  test('invalid UTF-8 in calibration text: data-encoding warning with the count and fraction', () => {
    const d = caseDir('utf8');
    const f = path.join(d, 'latin1.txt');
    writeFileSync(f, Buffer.concat([readFileSync(text).subarray(0, 20_000), Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xe9])]));
    const r = runCli(cli, ['prune', onnxDir, '--calibration', f, ...small, '--out', path.join(d, 'out'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const w = r.events.find((e) => e.type === 'warning.raised' && e.code === 'data-encoding') as EventOf<'warning.raised'> | undefined;
    assert.ok(w, 'a data-encoding warning');
    // 0xff, 0xfe, 0xc3 (followed by '(' so incomplete), 0xe9 (at the end): four replacements in 20,005 bytes.
    assert.match(w.message, /latin1\.txt: 4 invalid UTF-8 sequence\(s\) \(0\.020% of 20005 bytes\)/);
    assert.equal(w.file, f);
  });
});

describe('leftovers of killed runs and telemetry', () => {
  /** A pid no process has now (the highest possible one is never reached in practice). */
  const deadPid = () => {
    for (let pid = 4_000_000; ; pid--) {
      try {
        process.kill(pid, 0);
      } catch {
        return pid;
      }
    }
  };

  test("dead runs' temporaries beside --out are removed and reported; a live run's (this process) are kept", () => {
    const d = caseDir('leftovers');
    const out = path.join(d, 'out');
    const dead = deadPid();
    mkdirSync(`${out}.tmp-${dead}`);
    writeFileSync(path.join(`${out}.tmp-${dead}`, 'model.onnx'), 'partial');
    writeFileSync(`${out}.spill-${dead}`, Buffer.alloc(1000));
    // A reused pid: alive (this test), but it started after the temporary was last written.
    writeFileSync(`${out}.spill-${process.ppid}`, 'x');
    utimesSync(`${out}.spill-${process.ppid}`, new Date(Date.now() - 30 * 86400_000), new Date(Date.now() - 30 * 86400_000));
    // Live: this process, written now.
    writeFileSync(`${out}.spill-${process.pid}`, 'live');
    writeFileSync(`${out}.other`, 'not a temporary');
    const r = runCli(cli, ['prune', onnxDir, ...tiny, '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const w = r.events.filter((e) => e.type === 'warning.raised' && e.code === 'leftovers-removed') as EventOf<'warning.raised'>[];
    assert.equal(w.length, 1);
    for (const p of [`${out}.tmp-${dead}`, `${out}.spill-${dead}`, `${out}.spill-${process.ppid}`]) {
      assert.ok(w[0].message.includes(p), `${w[0].message} names ${p}`);
      assert.ok(!existsSync(p), `${p} removed`);
    }
    assert.deepEqual(besideOut(out).sort(), ['out', 'out.other', `out.spill-${process.pid}`]);
    assert.ok(readFileSync(path.join(out, 'events.ndjson'), 'utf8').includes('leftovers-removed'), 'the warning is in the run log');
  });

  test("a previous output that a killed --overwrite run had moved aside goes back in place, and is then treated as the existing output", () => {
    const d = caseDir('leftover-old');
    const out = path.join(d, 'out');
    const first = runCli(cli, ['prune', onnxDir, ...tiny, '--out', out, '--json']);
    assert.equal(first.code, 0, first.stderr);
    const original = hashTree(out);
    const dead = deadPid();
    renameSync(out, `${out}.old-${dead}`); // killed between moveIntoPlace's two renames
    mkdirSync(`${out}.tmp-${dead}`);
    const refused = runCli(cli, ['prune', onnxDir, ...tiny, '--out', out, '--json']);
    assert.equal(refused.code, 1, refused.stderr);
    const w = refused.events.find((e) => e.type === 'warning.raised' && e.code === 'leftovers-removed') as EventOf<'warning.raised'> | undefined;
    assert.ok(w?.message.includes(`${out}.old-${dead} (the previous output: moved back to ${out})`), w?.message);
    assert.equal((refused.events.at(-1) as EventOf<'run.failed'>).code, 'output-exists');
    assert.equal(hashTree(out), original, 'the previous output is back, byte for byte');
    assert.deepEqual(besideOut(out), ['out'], 'the dead temporary folder is removed');
    const replaced = runCli(cli, ['prune', onnxDir, ...tiny, '--out', out, '--overwrite', '--json']);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.deepEqual(besideOut(out), ['out']);
  });

  test('onnxruntime writes no telemetry: nothing under $HOME, no :memory:.ses in the working folder with an unwritable $HOME', () => {
    const d = caseDir('telemetry');
    const home = path.join(d, 'home');
    mkdirSync(home);
    // The token cache is off: its user folder under $HOME is a documented write (test/tokenize.test.ts); this is about onnxruntime.
    const r1 = runCli(cli, ['prune', onnxDir, ...tiny, '--no-token-cache', '--out', path.join(d, 'out1'), '--json'], { cwd: d, env: { HOME: home } });
    assert.equal(r1.code, 0, r1.stderr);
    assert.deepEqual(readdirSync(home), [], 'nothing written under $HOME');
    const cwd = path.join(d, 'cwd');
    mkdirSync(cwd);
    const r2 = runCli(cli, ['prune', onnxDir, ...tiny, '--no-token-cache', '--out', path.join(d, 'out2'), '--json'], { cwd, env: { HOME: path.join(d, 'no-such-home') } });
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(readdirSync(cwd), [], 'nothing written in the working folder');
    assert.deepEqual(readdirSync(d).sort(), ['cwd', 'home', 'out1', 'out2'], 'only the outputs');
    // The control: asked to keep telemetry, onnxruntime does write its store under $HOME (it keeps none when CI
    // is set, so the control runs without it).
    const r3 = runCli(cli, ['prune', onnxDir, ...tiny, '--out', path.join(d, 'out3'), '--json'], { cwd, env: { HOME: home, ORT_DISABLE_TELEMETRY: '0', CI: undefined } });
    assert.equal(r3.code, 0, r3.stderr);
    assert.ok(existsSync(path.join(home, '.cache', 'Microsoft', 'DeveloperTools', '.onnxruntime')), 'the control run wrote its telemetry store');
  });
});
