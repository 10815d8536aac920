// Perplexity with the SparseGPT protocol: each window alone (mask all ones, no extra BOS), the NLL of every
// next token inside the window (seqlen − 1 predictions per window), summed in float64, ppl = exp(NLL / count).
// Windows are streamed through onnxruntime a few at a time, so memory stays at one batch of logits.

import * as ort from 'onnxruntime-node';
import { halfBytesToFloat32 } from '../formats/dtype';
import { causalLmFeeds, InputSpec } from '../models/inputs';

export interface PerplexityResult {
  ppl: number;
  /** Mean NLL per predicted token (nats). */
  meanNll: number;
  windows: number;
  predictedTokens: number;
}

export interface PerplexityOptions {
  /** Windows per onnxruntime run. */
  batch?: number;
  onProgress?: (done: number, total: number) => void;
  /** Checked between batches: throw to stop (cancellation). */
  checkpoint?: () => void;
  modelFile?: string;
}

/** Σ_t −log softmax(logits[t])[next[t]] over one window's logits (L, vocab), as float64. */
export function windowNll(logits: Float32Array, offset: number, ids: Int32Array, vocab: number): number {
  let nll = 0;
  for (let t = 0; t + 1 < ids.length; t++) {
    const row = offset + t * vocab;
    let max = -Infinity;
    for (let v = 0; v < vocab; v++) if (logits[row + v] > max) max = logits[row + v];
    let sum = 0;
    for (let v = 0; v < vocab; v++) sum += Math.exp(logits[row + v] - max);
    nll += Math.log(sum) + max - logits[row + ids[t + 1]];
  }
  return nll;
}

export async function perplexity(session: ort.InferenceSession, specs: InputSpec[], windows: Int32Array[], opts: PerplexityOptions = {}): Promise<PerplexityResult> {
  if (windows.length === 0) throw new Error('perplexity: no evaluation windows (the text is shorter than one window)');
  const batch = opts.batch ?? 4;
  const outName = session.outputNames.includes('logits') ? 'logits' : session.outputNames[0];
  let nll = 0;
  let count = 0;
  for (let w0 = 0; w0 < windows.length; w0 += batch) {
    opts.checkpoint?.();
    const group = windows.slice(w0, w0 + batch);
    const out = (await session.run(causalLmFeeds(specs, group, opts.modelFile ?? 'model')))[outName];
    const [b, L, vocab] = out.dims;
    if (b !== group.length || L !== group[0].length) throw new Error(`perplexity: logits of shape [${out.dims}] for a batch of ${group.length}×${group[0].length}`);
    const half = out.data as Uint16Array;
    const data = out.type === 'float16' ? halfBytesToFloat32(new Uint8Array(half.buffer, half.byteOffset, half.byteLength)) : (out.data as Float32Array);
    for (let i = 0; i < b; i++) {
      nll += windowNll(data, i * L * vocab, group[i], vocab);
      count += L - 1;
    }
    opts.onProgress?.(Math.min(w0 + batch, windows.length), windows.length);
  }
  return { ppl: Math.exp(nll / count), meanNll: nll / count, windows: windows.length, predictedTokens: count };
}
