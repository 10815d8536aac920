// The proof every Hugging Face family gets (issue 14): a generated folder with random weights whose graph's logits
// match an independent float64 forward to 1e-4 relative; pruned by a whole run, re-read, its logits match the
// float64 forward of its own stored weights, its perplexity equals the one the run reported, and only the pruned
// layers' tensors changed (same dims, same dtype, every other tensor bit-identical).

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { evaluationWindows, readTokens } from '../../src/backend/data/tokens';
import { perplexity } from '../../src/backend/eval/perplexity';
import { openCheckpoint } from '../../src/backend/formats/checkpoint';
import type { HfCheckpoint } from '../../src/backend/formats/hfCheckpoint';
import { readTensorBytes } from '../../src/backend/formats/safetensors';
import { inputSpecs } from '../../src/backend/models/inputs';
import type { Engine } from '../../src/backend/onnx/session';
import { discoverLayers, PrunableLayer } from '../../src/backend/pipeline/layers';
import { runPrune } from '../../src/backend/pipeline/run';
import { resolveConfig } from '../../src/protocol/config';
import type { Event, EventOf } from '../../src/protocol/events';
import { checkpointLogits, compareLogits, FolderTensor, writeHfFolder } from './hfFolder';
import { Rng } from './reference';

export type Weights = Map<string, Float32Array>;

/** Random weights at scales that keep every part of the network visible in the logits: norms ≈ 1, embeddings
 *  0.5, biases 0.1, matrices 1/√fan-in (fan-in = the smaller dim, as [in, out] and [out, in] both occur). */
export function randomTensors(shapes: ReadonlyMap<string, number[]>, seed: number): FolderTensor[] {
  const rng = new Rng(seed);
  return [...shapes].map(([name, dims]) => {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    const isNorm = dims.length === 1 && /(norm|ln_\w+)\.weight$/.test(name);
    const scale = name.endsWith('.bias') ? 0.1 : /embed|wte|wpe/.test(name) ? 0.5 : isNorm ? 0.2 : 1 / Math.sqrt(Math.min(...dims));
    for (let i = 0; i < data.length; i++) data[i] = (isNorm ? 1 : 0) + scale * rng.normal();
    return { name, dims, data };
  });
}

export function storedWeights(ckpt: HfCheckpoint): Weights {
  return new Map([...ckpt.entries.keys()].map((n) => [n, ckpt.weightAsFloat32(n)]));
}

export const IDS = [
  Array.from({ length: 12 }, (_, i) => (i * 37 + 5) % 64), Array.from({ length: 12 }, (_, i) => (i * 11 + 3) % 64), Array.from({ length: 12 }, (_, i) => (i * 7 + 1) % 64),
];
export const MASK = [Array(12).fill(1), [...Array(8).fill(1), 0, 0, 0, 0], [0, 0, 0, ...Array(9).fill(1)]];

export interface FamilyCase {
  /** Test label and folder name. */
  name: string;
  config: Record<string, unknown>;
  shapes: ReadonlyMap<string, number[]>;
  reference: (W: Weights, ids: number[][], mask: number[][]) => Float64Array;
  dtype?: string;
  shards?: number;
  seed?: number;
}

export interface FamilyResult {
  events: Event[];
  pruned: EventOf<'layer.pruned'>[];
  layers: PrunableLayer[];
  dense: Weights;
  written: Weights;
}

/** A token file of 64-token vocabulary ids (the tests' models have vocab 64). */
export function writeIds(file: string, seed: number): string {
  const rng = new Rng(seed);
  writeFileSync(file, JSON.stringify(Array.from({ length: 4096 }, () => Math.floor(rng.uniform() * 64))));
  return file;
}

export interface CheckOptions {
  /** Config fields over SparseGPT 50% (e.g. a pattern). */
  fields?: Record<string, unknown>;
  /** Calibration windows of 16 tokens (default 16). */
  nsamples?: number;
}

/** Writes the folder, checks the logits, prunes (SparseGPT 50%), re-reads and checks the output as described above. */
export async function checkFamily(engine: Engine, work: string, c: FamilyCase, opts: CheckOptions = {}): Promise<FamilyResult> {
  const dir = path.join(work, c.name);
  writeHfFolder(dir, c.config, randomTensors(c.shapes, c.seed ?? 7), { dtype: c.dtype, shards: c.shards });
  const ckpt = openCheckpoint(dir) as HfCheckpoint;
  const dense = storedWeights(ckpt);
  const first = compareLogits(await checkpointLogits(engine, ckpt, IDS, MASK), c.reference(dense, IDS, MASK));
  console.log(`${c.name}: max |Δlogit| ${first.worst.toExponential(2)} at logit scale ${first.scale.toFixed(2)}`);
  assert.ok(first.scale > 1, `logits too small to test anything (${first.scale})`);
  assert.ok(first.worst < 1e-4 * first.scale, `max |Δ| ${first.worst}`);

  const ids = writeIds(path.join(work, `${c.name}-ids.json`), 5);
  const out = path.join(work, `${c.name}-pruned`);
  const events: Event[] = [];
  const evaluation = { path: ids, seqlen: 16, maxWindows: 16 };
  await runPrune(resolveConfig({
    checkpoint: dir, output: out, method: 'sparsegpt', sparsity: 0.5,
    calibration: { path: ids, nsamples: opts.nsamples ?? 16, seqlen: 16, seed: 0 }, evaluation, ...opts.fields,
  }, work), { emit: (e) => events.push(e) });
  const pruned = events.filter((e) => e.type === 'layer.pruned') as EventOf<'layer.pruned'>[];
  const ppl = (events.filter((e) => e.type === 'evaluation.finished') as EventOf<'evaluation.finished'>[]).map((e) => e.perplexity);
  assert.equal(ppl.length, 2);

  const written = openCheckpoint(out) as HfCheckpoint;
  const after = storedWeights(written);
  const again = compareLogits(await checkpointLogits(engine, written, IDS, MASK), c.reference(after, IDS, MASK));
  assert.ok(again.worst < 1e-4 * again.scale, `pruned: max |Δ| ${again.worst}`);
  const session = await engine.modelSession(written.sessionSource());
  const specs = inputSpecs(written.model.graph.input, new Set(written.model.graph.initializer.map((t) => t.name)));
  const measured = await perplexity(session, specs, evaluationWindows(readTokens(ids, undefined), evaluation.seqlen, evaluation.maxWindows), { batch: 8 }); // the run's micro-batch
  await session.release();
  console.log(`${c.name}: perplexity dense ${ppl[0].toFixed(4)}, pruned ${ppl[1].toFixed(4)} (reported), re-read ${measured.ppl.toFixed(4)}`);
  assert.ok(Math.abs(measured.ppl / ppl[1] - 1) < 1e-6, `re-read perplexity ${measured.ppl} vs reported ${ppl[1]}`);

  const layers = discoverLayers(ckpt.model).layers;
  const byName = new Map(layers.map((l) => [l.name, l]));
  const prunedWeights = new Set(pruned.map((e) => (byName.get(e.layer) as PrunableLayer).weight));
  for (const [name, e] of ckpt.entries) {
    const w = written.entries.get(name);
    assert.ok(w && w.dtype === e.dtype && w.shape.join() === e.shape.join(), `${name}: same dtype and dims`);
    if (prunedWeights.has(name)) {
      const zeros = (after.get(name) as Float32Array).filter((x) => x === 0).length;
      assert.ok(zeros >= (dense.get(name) as Float32Array).length / 2, `${name}: ${zeros} zeros`);
    } else assert.deepEqual(readTensorBytes(w), readTensorBytes(e), `${name} bit-identical`);
  }
  return { events, pruned, layers, dense, written: after };
}
