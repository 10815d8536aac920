// The disk fills while the real CLI (`prunekit prune … --json`, run from source) writes its output: the run ends with
// `run.failed` code `no-space` naming the output, exit 1, and leaves neither the output nor its temporary folder;
// the input is untouched.
//
// The disk: a 300 KiB tmpfs mounted as the output's parent (the model alone is ~1.2 MB), which needs root (CI runs
// as root). Where mounting is not possible that case is skipped with the reason, and the same run against a
// simulated full disk (test/helpers/fullDisk.ts: a preload that makes writes under a folder fail with ENOSPC past
// a quota) still runs, so the CLI's handling is covered either way.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { Event, EventOf, parseEvent } from '../src/protocol/events';
import { fixturesDir, repoRoot } from './helpers/realLayers';

const modelDir = path.join(fixturesDir, 'stories260K-onnx');
const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-nospace-'));

after(() => rmSync(work, { recursive: true, force: true }));

function hashDir(dir: string): string {
  const h = createHash('sha256');
  for (const f of readdirSync(dir).sort()) h.update(f).update(readFileSync(path.join(dir, f)));
  return h.digest('hex');
}

/** `prunekit prune` from source (magnitude needs no calibration data: the run reaches the writer in seconds). */
function pruneCli(out: string, preload: string[] = [], env: Record<string, string> = {}): { code: number | null; events: Event[]; stderr: string } {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', ...preload.flatMap((p) => ['--import', p]), path.join(repoRoot, 'src', 'backend', 'cli', 'main.ts'), 'prune', modelDir, '--method', 'magnitude', '--out', out, '--json'],
    { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, ...env } },
  );
  return { code: r.status, events: r.stdout.split('\n').filter((l) => l.trim()).map(parseEvent), stderr: r.stderr };
}

function assertNoSpaceFailure(r: ReturnType<typeof pruneCli>, out: string, inputHash: string): void {
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.events.some((e) => e.type === 'layer.pruned'), 'the run pruned before it wrote');
  const last = r.events[r.events.length - 1] as EventOf<'run.failed'>;
  assert.equal(last.type, 'run.failed', JSON.stringify(last));
  assert.equal(last.code, 'no-space', last.message);
  assert.match(last.message, /no space left/);
  assert.ok(last.message.includes(out), `${last.message} names the output ${out}`);
  assert.ok(last.hint, 'a hint says what to do');
  assert.ok(!r.events.some((e) => e.type === 'run.finished'));
  assert.deepEqual(readdirSync(path.dirname(out)), [], 'no output folder and no temporary folder left');
  assert.equal(hashDir(modelDir), inputHash, 'input untouched');
}

describe('the disk fills while the CLI writes the pruned checkpoint', () => {
  const inputHash = hashDir(modelDir);

  test('a real 300 KiB tmpfs as the output parent', (t) => {
    const mnt = path.join(work, 'small-disk');
    mkdirSync(mnt);
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=300k', 'tmpfs', mnt], { encoding: 'utf8' });
    if (mount.status !== 0) {
      t.skip(`cannot mount a tmpfs here (${(mount.error?.message ?? mount.stderr).trim() || `exit ${mount.status}`}); the simulated disk below covers the CLI`);
      return;
    }
    try {
      const out = path.join(mnt, 'pruned');
      assertNoSpaceFailure(pruneCli(out), out, inputHash);
    } finally {
      const u = spawnSync('umount', [mnt], { encoding: 'utf8' });
      assert.equal(u.status, 0, `umount ${mnt}: ${u.stderr}`);
    }
  });

  test('a simulated full disk (ENOSPC past 300 KiB written under the output parent)', () => {
    const parent = path.join(work, 'simulated-disk');
    mkdirSync(parent);
    const out = path.join(parent, 'pruned');
    const r = pruneCli(out, [path.join(repoRoot, 'test', 'helpers', 'fullDisk.ts')], { PRUNEKIT_FULL_DISK_DIR: parent, PRUNEKIT_FULL_DISK_BYTES: String(300 * 1024) });
    assertNoSpaceFailure(r, out, inputHash);
  });
});
