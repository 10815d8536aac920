// SIGKILL a real run (stories260K, SparseGPT, 8 windows of 64) at 20 seeded moments spread over calibration,
// pruning, writing and renaming (aimed by the run's own --json events). After each kill the input is unchanged, and
// the next run onto the same --out succeeds, reports the killed run's temporaries as removed, and leaves none.
//
//   node --import tsx --test test/faultInjection.test.ts

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mulberry32 } from '../src/backend/random';
import { Event, EventOf } from '../src/protocol/events';
import { besideOut, bundleCli, hashTree, runCli, startCli } from './helpers/cliProbe';
import { fixturesDir } from './helpers/realLayers';

const onnxDir = path.join(fixturesDir, 'stories260K-onnx');
const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-kill-'));
// 32 KB of the text (≈ 8,000 tokens): tokenizing the whole file would dominate each run.
const text = path.join(work, 'calibration.txt');
writeFileSync(text, readFileSync(path.join(fixturesDir, 'data', 'tinystories_valid_head.txt')).subarray(0, 32768));
const out = path.join(work, 'out');
const args = ['prune', onnxDir, '--method', 'sparsegpt', '--calibration', text, '--nsamples', '8', '--seqlen', '64', '--out', out, '--overwrite', '--json'];
let cli = '';

before(async () => {
  cli = await bundleCli('fault-test');
});
after(() => rmSync(work, { recursive: true, force: true }));

type Phase = 'calibration' | 'pruning' | 'writing' | 'renaming';
const PHASES: Phase[] = ['calibration', 'pruning', 'writing', 'renaming'];

/** When to kill: after the n-th event of a type, plus a delay (ms). */
interface Aim {
  phase: Phase;
  after: Event['type'];
  n: number;
  delayMs: number;
}

/** The moment a kill landed in, from the last event the run emitted before it. */
function landedIn(events: Event[]): string {
  const last = events[events.length - 1];
  if (!last) return 'start';
  if (last.type === 'run.finished') return 'finished';
  if (last.type === 'calibration.progressed') return 'calibration';
  if (last.type === 'layer.pruned') return 'pruning';
  if (events.filter((e) => e.type === 'block.finished').length === 5) return 'writing or renaming';
  return last.type;
}

describe('SIGKILL at 20 moments: input unchanged, the next run succeeds and cleans up', () => {
  test('20 kills', async (t) => {
    const inputHash = [hashTree(onnxDir), hashTree(text)];
    t.diagnostic(`seed 20261207; ${args.join(' ')}`);
    // A reference run: how many events of each kind, and how long writing takes (last block.finished → run.finished).
    const ref = runCli(cli, args, { timeoutMs: 300_000 });
    assert.equal(ref.code, 0, ref.stderr);
    const count = (type: Event['type']) => ref.events.filter((e) => e.type === type).length;
    const started = performance.now();
    let lastBlockAt = 0;
    const timing = startCli(cli, args, (e) => {
      if (e.type === 'block.finished') lastBlockAt = performance.now() - started;
    });
    await timing.closed;
    const writeMs = Math.max(20, performance.now() - started - lastBlockAt);

    const rand = mulberry32(20261207);
    const aims: Aim[] = Array.from({ length: 20 }, (_, k) => {
      const phase = PHASES[k % 4];
      if (phase === 'calibration') return { phase, after: 'calibration.progressed', n: 1 + Math.floor(rand() * count('calibration.progressed')), delayMs: rand() * 5 };
      if (phase === 'pruning') return { phase, after: 'layer.pruned', n: 1 + Math.floor(rand() * count('layer.pruned')), delayMs: rand() * 5 };
      if (phase === 'writing') return { phase, after: 'block.finished', n: 5, delayMs: rand() * writeMs * 0.8 };
      return { phase, after: 'block.finished', n: 5, delayMs: writeMs * (0.8 + 0.4 * rand()) };
    });

    const landed = new Map<string, number>();
    for (const [k, aim] of aims.entries()) {
      const events: Event[] = [];
      let seen = 0;
      let timer: NodeJS.Timeout | undefined;
      const run = startCli(cli, args, (e) => {
        events.push(e);
        if (e.type === aim.after && ++seen === aim.n) timer = setTimeout(() => run.child.kill('SIGKILL'), aim.delayMs);
      });
      const code = await run.closed;
      clearTimeout(timer);
      const where = code === 0 ? 'after the end' : landedIn(events);
      landed.set(where, (landed.get(where) ?? 0) + 1);

      assert.deepEqual([hashTree(onnxDir), hashTree(text)], inputHash, `kill ${k} (${aim.phase}): input unchanged`);
      const left = besideOut(out).filter((f) => f !== 'out');
      const next = runCli(cli, args, { timeoutMs: 300_000 });
      assert.equal(next.code, 0, `kill ${k}: the next run succeeds: ${next.stderr}`);
      const warned = next.events.filter((e) => e.type === 'warning.raised' && e.code === 'leftovers-removed') as EventOf<'warning.raised'>[];
      if (left.length > 0) {
        assert.equal(warned.length, 1, `kill ${k}: leftovers ${left.join(', ')} reported`);
        for (const f of left) assert.ok(warned[0].message.includes(path.join(work, f)), `${warned[0].message} names ${f}`);
      } else {
        assert.equal(warned.length, 0);
      }
      assert.deepEqual(besideOut(out), ['out'], `kill ${k}: nothing beside the output after the next run`);
    }
    t.diagnostic(`kills landed: ${JSON.stringify(Object.fromEntries(landed))}`);
    const phases = ['calibration', 'pruning', 'writing or renaming'].filter((p) => landed.has(p));
    assert.ok(phases.length === 3, `kills in calibration, pruning, and writing/renaming: ${JSON.stringify(Object.fromEntries(landed))}`);
  });
});
