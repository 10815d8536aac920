// Why our own: Node's gc() is two lines of its own API away (v8.setFlagsFromString, vm); the `expose-gc` package
// (1.0.0, unmaintained) is those two lines, and the pacing below is the point.
//
// Full garbage collections paced by what the pipeline drops. V8 frees an ArrayBuffer only when a full collection
// finds it dead, and lets large dead ones pile up first (on a 7B block, 1.4 GB of calibration outputs): the
// pipeline says how many bytes it has just let go, and past COLLECT_EVERY a full collection frees them.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// Node exposes gc() only with --expose-gc; a context made after the flag is set has it (the process keeps its flags).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Dropped bytes that make a collection worth its few milliseconds (the JS heap itself stays small). */
const COLLECT_EVERY = 256 << 20;
let pending = 0;

/** Notes `bytes` of ArrayBuffers just made unreachable; past COLLECT_EVERY since the last collection, collects. */
export function dropped(bytes: number): void {
  pending += bytes;
  if (pending < COLLECT_EVERY) return;
  pending = 0;
  gc();
}
