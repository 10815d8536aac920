// The backend's side of the cancel channel (src/protocol/cancelRequest.ts): calls `cancel` when a CANCEL_REQUEST
// line arrives on `input`. The end of the input is not a cancel: a tool that closes stdin at once still runs.

import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { CANCEL_REQUEST } from '../../protocol/cancelRequest';

/** Watches `input` for the cancel line; the returned function stops watching (and lets the process exit). */
export function cancelOnRequest(input: Readable, cancel: () => void): () => void {
  const lines = createInterface({ input, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (line.trim() === CANCEL_REQUEST) cancel();
  });
  return () => lines.close();
}
