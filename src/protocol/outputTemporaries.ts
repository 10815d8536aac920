// Where a backend process keeps a run's unfinished output: beside the output, named after the output and the
// process id. The backend writes and removes them (src/backend/formats/atomicFolder.ts); the extension removes
// them itself when it had to kill a backend that did not stop in time.

import { rmSync } from 'node:fs';
import * as path from 'node:path';

/** The folder an output is built in before it is renamed into place. */
export function temporaryFolderOf(out: string, pid: number = process.pid): string {
  return `${path.resolve(out)}.tmp-${pid}`;
}

/** The run's scratch file beside it (pruned weights spilled until the writer copies them into the output). */
export function spillFileOf(out: string, pid: number = process.pid): string {
  return `${path.resolve(out)}.spill-${pid}`;
}

/** Removes what the run of process `pid` leaves beside `out` until it finishes (for an exit that skips `finally`). */
export function removeTemporaries(out: string, pid: number = process.pid): void {
  rmSync(temporaryFolderOf(out, pid), { recursive: true, force: true });
  rmSync(spillFileOf(out, pid), { force: true });
}
