// The local executor: the points one after another in this process, each a normal run (runPrune) whose events go to
// logs/<name>.ndjson as they come. Resumable: a point whose run folder is complete is skipped; a failed point does not
// stop the others; a cancel stops the running point (no output left, as any cancelled run) and the sweep.

import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { formatEvent, makeEvent } from '../../protocol/events';
import { pointPaths, SweepIndex, SweepPoint } from '../../protocol/sweep';
import { failureEvent } from '../cli/failures';
import { CheckpointError } from '../formats/onnxCheckpoint';
import { RunCancelledError, runPrune } from '../pipeline/run';
import { PlannedPoint } from './expand';
import { fileCalibrationStore, fileDenseStore } from './shared';
import { saveIndex } from './sweepFolder';

export interface SweepHooks {
  signal?: AbortSignal;
  /** Called at every change of a point's status, after sweep.json has it. */
  onPoint(point: SweepPoint): void;
}

export async function runLocally(sweepDir: string, index: SweepIndex, points: PlannedPoint[], hooks: SweepHooks): Promise<SweepIndex> {
  const denseStore = fileDenseStore(sweepDir);
  const calibrationStore = fileCalibrationStore(sweepDir);
  const update = (p: SweepPoint, change: Partial<SweepPoint>) => {
    Object.assign(p, change);
    saveIndex(sweepDir, index);
    hooks.onPoint(p);
  };
  for (const p of index.points) {
    if (p.status === 'finished') continue;
    if (hooks.signal?.aborted) break;
    const { log } = pointPaths(sweepDir, p.name);
    mkdirSync(path.dirname(log), { recursive: true });
    const fd = openSync(log, 'w');
    const write = (e: Parameters<typeof formatEvent>[0]) => writeSync(fd, formatEvent(e) + '\n');
    const t0 = performance.now();
    update(p, { status: 'running', message: undefined });
    try {
      await runPrune(points[p.index].config, { emit: write, signal: hooks.signal, denseStore, calibrationStore });
      update(p, { status: 'finished' });
    } catch (e) {
      if (e instanceof RunCancelledError || (e instanceof CheckpointError && e.code === 'cancelled') || hooks.signal?.aborted) {
        write(makeEvent('run.cancelled', { signal: null, lastLayer: e instanceof RunCancelledError ? e.lastLayer : null, seconds: (performance.now() - t0) / 1000 }));
        update(p, { status: 'cancelled', message: 'cancelled' });
        break;
      }
      const failed = failureEvent(e, { checkpoint: points[p.index].config.checkpoint });
      write(failed);
      update(p, { status: 'failed', message: failed.message });
    } finally {
      closeSync(fd);
    }
  }
  return index;
}
