// Real event streams for the webview's tests: run the backend CLI from source (`prunekit prune --json`) on the
// fixtures' stories260K and record each NDJSON event with the clock at which it arrived, as the extension host
// does. Small calibration (16 windows of 128 tokens) and evaluation (8 windows) keep a run to seconds.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Event, EventType, parseEvent } from '../../src/protocol/events';
import { progressOf } from '../../src/protocol/progress';
import type { MethodName, PatternString } from '../../src/protocol/pruning';
import type { RunSnapshot } from '../../src/protocol/webview';
import { fixturesDir, repoRoot } from './realLayers';

export const modelDir = path.join(fixturesDir, 'stories260K-onnx');
export const textFile = path.join(fixturesDir, 'data', 'tinystories_valid_head.txt');

export interface RecordOptions {
  method?: MethodName;
  sparsity?: number;
  pattern?: PatternString;
  /** Measure dense and pruned perplexity (8 windows). */
  evaluate?: boolean;
  /** Calibration text (a missing file makes a real run.failed). */
  calibration?: string;
  /** SIGTERM the backend as soon as an event of this type arrives (a real run.cancelled). */
  cancelAfter?: EventType;
}

export interface RecordedRun {
  events: Event[];
  /** Host clock (ms) at which each event arrived. */
  times: number[];
  /** The --out folder (written only when the run finished). */
  out: string;
  exitCode: number | null;
  stderr: string;
  /** As the host would send it in run.reset / compare.reset. */
  snapshot(label: string): RunSnapshot;
  /** Removes the run's temporary folder. */
  dispose(): void;
}

export async function recordRun(o: RecordOptions = {}): Promise<RecordedRun> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'prunekit-webview-'));
  const out = path.join(dir, 'out');
  const args = [
    '--import', 'tsx', path.join(repoRoot, 'src', 'backend', 'cli', 'main.ts'),
    'prune', modelDir,
    '--method', o.method ?? 'apt',
    '--sparsity', String(o.sparsity ?? 0.5),
    ...(o.pattern ? ['--pattern', o.pattern] : []),
    '--calibration', o.calibration ?? textFile, '--nsamples', '16', '--seqlen', '128',
    ...(o.evaluate === false ? [] : ['--eval', textFile, '--max-windows', '8']),
    '--out', out, '--json',
  ];
  const child = spawn(process.execPath, args, { cwd: repoRoot });
  const events: Event[] = [];
  const times: number[] = [];
  let stderr = '';
  let pending = '';
  let killed = false;
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => {
    pending += d.toString();
    let i: number;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      if (!line.trim()) continue;
      const e = parseEvent(line);
      events.push(e);
      times.push(Date.now());
      if (o.cancelAfter === e.type && !killed) {
        killed = true;
        child.kill('SIGTERM');
      }
    }
  });
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  return {
    events,
    times,
    out,
    exitCode,
    stderr,
    snapshot: (label) => ({ id: out, label, status: progressOf(events, times).status, events, times }),
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
