// A whole pruning run in-process on a short protocol (16 calibration windows of 128 tokens after the first 65,536,
// 16 evaluation windows of 128), collecting its events: what the Mamba tests run many times over.

import { runPrune } from '../../src/backend/pipeline/run';
import { resolveConfig } from '../../src/protocol/config';
import { Event, EventOf } from '../../src/protocol/events';

export interface QuickRun {
  events: Event[];
  /** layer.pruned by layer name. */
  pruned: Map<string, EventOf<'layer.pruned'>>;
  /** evaluation.finished perplexities in order (dense, pruned). */
  ppl: number[];
  /** What runPrune threw, if it did. */
  error?: Error;
}

/** `fields` (checkpoint, output, method, …) over the short protocol on `text`; relative paths resolve in `work`. */
export async function quickRun(fields: Record<string, unknown>, text: string, work: string): Promise<QuickRun> {
  const events: Event[] = [];
  const config = resolveConfig({
    method: 'apt', sparsity: 0.5,
    calibration: { path: text, nsamples: 16, seqlen: 128, seed: 0, skipTokens: 65536 },
    evaluation: { path: text, seqlen: 128, maxWindows: 16 },
    ...fields,
  }, work);
  let error: Error | undefined;
  try {
    await runPrune(config, { emit: (e) => events.push(e) });
  } catch (e) {
    error = e as Error;
  }
  const pruned = new Map((events.filter((e) => e.type === 'layer.pruned') as EventOf<'layer.pruned'>[]).map((e) => [e.layer, e]));
  const ppl = (events.filter((e) => e.type === 'evaluation.finished') as EventOf<'evaluation.finished'>[]).map((e) => e.perplexity);
  return { events, pruned, ppl, error };
}
