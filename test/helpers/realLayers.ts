// Real pruning problems from a real model: the linear layers of an exported ONNX LLM (the fixtures'
// stories260K), each with the Hessian of its input over calibration text.
//
// How: decode the checkpoint, find every prunable linear layer (a MatMul whose second input is a 2-D
// FLOAT initializer, lm_head excluded), add each distinct layer input as an extra graph output, run the
// model on calibration windows and feed those tensors to HessianAccumulator. Layers that read the same
// tensor (q/k/v, gate/up) share one H. Nothing is cached on disk.
//
// This is a test helper, not the pipeline: the whole graph runs once per batch (fine for a 260K model).

import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { Tokenizer } from '@huggingface/tokenizers';
import { mulberry32 } from '../../src/backend/random';
import { HessianAccumulator } from './hessian';
import { DataType, decodeModel, ModelProto, TensorProto } from '../../src/backend/onnx/proto';
import type { Engine } from '../../src/backend/onnx/session';

export const repoRoot = path.resolve(__dirname, '..', '..');
/** The shared fixtures, beside the repository (CI clones `shared/` next to it). */
export const fixturesDir = path.resolve(repoRoot, '..', 'shared', 'fixtures');

/** Token id of `<s>`, which the reference protocol puts first: ids = [BOS] + encode(text). */
export const BOS = 1;

// ---------------------------------------------------------------------------------------------------
// Tokenizer

export interface IdEncoder {
  /** [BOS] + encode(text), as the fixture oracles build ids. */
  encodeWithBos(text: string): number[];
}

/** Loads `tokenizer.json` (+ `tokenizer_config.json`) from a model folder. The post-processor would add
 *  BOS too; we encode without special tokens and prepend BOS ourselves so the protocol is explicit. */
export function loadTokenizer(modelDir: string): IdEncoder {
  const json = JSON.parse(readFileSync(path.join(modelDir, 'tokenizer.json'), 'utf8')) as object;
  const config = JSON.parse(readFileSync(path.join(modelDir, 'tokenizer_config.json'), 'utf8')) as object;
  const tok = new Tokenizer(json, config);
  return { encodeWithBos: (text) => [BOS, ...tok.encode(text, { add_special_tokens: false }).ids] };
}

// ---------------------------------------------------------------------------------------------------
// Calibration windows

export interface CalibrationOptions {
  /** Calibration sequences (SparseGPT's nsamples). */
  nsamples: number;
  seqlen: number;
  seed: number;
  /** Sequences per model run (and per HessianAccumulator.addBatch). */
  batch: number;
}

export const DEFAULT_CALIBRATION: CalibrationOptions = { nsamples: 32, seqlen: 256, seed: 0, batch: 8 };

/**
 * `nsamples` windows of `seqlen` ids from a llama2.c-style text file (stories separated by `<|endoftext|>`).
 * Each window starts at a story drawn at random (seeded, without repetition): its text is that story and
 * the following ones, each trim()med and joined with "\n\n" (as the fixtures' training corpus joins them),
 * encoded as [BOS] + encode(text) and cut to `seqlen` ids. So every window starts like a document, with BOS,
 * and tokenization cost stays proportional to the tokens used (the whole 2 MiB file takes seconds).
 */
export function calibrationWindows(file: string, tok: IdEncoder, opts: CalibrationOptions): number[][] {
  const stories = readFileSync(file, 'utf8').split('<|endoftext|>').map((s) => s.trim()).filter((s) => s.length > 0);
  stories.pop(); // the file is a byte-range cut: its last story is incomplete
  if (stories.length < opts.nsamples) throw new Error(`${file}: ${stories.length} stories, need ${opts.nsamples}`);
  const rand = mulberry32(opts.seed);
  const used = new Set<number>();
  const windows: number[][] = [];
  // ~2 characters per token here; ask for 3 per token so one encode is almost always enough.
  const chars = 3 * opts.seqlen;
  while (windows.length < opts.nsamples) {
    const start = Math.floor(rand() * stories.length);
    if (used.has(start)) continue;
    used.add(start);
    let text = stories[start];
    let next = start + 1;
    let ids: number[] = [];
    for (;;) {
      while (text.length < chars && next < stories.length) text += '\n\n' + stories[next++];
      ids = tok.encodeWithBos(text);
      if (ids.length >= opts.seqlen || next >= stories.length) break;
      text += '\n\n' + stories[next++];
    }
    if (ids.length < opts.seqlen) continue; // near the end of the file: draw another start
    windows.push(ids.slice(0, opts.seqlen));
  }
  return windows;
}

// ---------------------------------------------------------------------------------------------------
// Linear layers of an exported graph

export interface LinearLayerRef {
  /** The MatMul node's name, e.g. `/model/layers.0/self_attn/q_proj/MatMul`. */
  name: string;
  /** The tensor the layer reads (its input activations). */
  input: string;
  /** out features */
  rows: number;
  /** in features */
  cols: number;
  /** (rows, cols) row-major: the transpose of the stored [in, out] initializer. */
  W: Float32Array;
}

function floatValues(t: TensorProto): Float32Array {
  if (t.dataLocation === 1) throw new Error(`initializer ${t.name}: external data is not supported here`);
  if (t.rawData) {
    // raw_data is a view into the model buffer (a Node Buffer, whose slice() does not copy) and may be
    // unaligned: copy into a fresh array before viewing it as floats.
    const bytes = new Uint8Array(t.rawData);
    return new Float32Array(bytes.buffer, 0, bytes.byteLength / 4);
  }
  return Float32Array.from(t.floatData ?? []);
}

/** Prunable linear layers: MatMul nodes whose second input is a 2-D FLOAT initializer, lm_head excluded. */
export function findLinearLayers(model: ModelProto): LinearLayerRef[] {
  const inits = new Map(model.graph.initializer.map((t) => [t.name, t]));
  const layers: LinearLayerRef[] = [];
  for (const node of model.graph.node) {
    if (node.opType !== 'MatMul' || node.name.includes('lm_head')) continue;
    const w = inits.get(node.input[1]);
    if (!w || w.dataType !== DataType.FLOAT || w.dims.length !== 2) continue;
    const cols = Number(w.dims[0]); // stored [in, out]
    const rows = Number(w.dims[1]);
    const stored = floatValues(w); // (cols, rows)
    if (stored.length !== rows * cols) throw new Error(`initializer ${w.name}: ${stored.length} values, expected ${cols}x${rows}`);
    const W = new Float32Array(rows * cols);
    for (let i = 0; i < cols; i++) for (let o = 0; o < rows; o++) W[o * cols + i] = stored[i * rows + o];
    layers.push({ name: node.name, input: node.input[0], rows, cols, W });
  }
  return layers;
}

/** A copy of `model` whose outputs also include `tensors` (FLOAT, shape left to the runtime). */
export function withExtraOutputs(model: ModelProto, tensors: string[]): ModelProto {
  const have = new Set(model.graph.output.map((o) => o.name));
  const extra = tensors.filter((t) => !have.has(t)).map((name) => ({ name, type: { tensorType: { elemType: DataType.FLOAT } } }));
  return { ...model, graph: { ...model.graph, output: [...model.graph.output, ...extra] } };
}

// ---------------------------------------------------------------------------------------------------
// Calibration

export interface RealLayer {
  name: string;
  rows: number;
  cols: number;
  /** (rows, cols) row-major. */
  W: Float32Array;
  /** (cols, cols) H = (2/N) Σ_tokens xᵀx, N = nsamples sequences (shared with layers of the same input). */
  H: Float32Array;
  /** (cols) running mean over sequences of Σ_tokens x_j². */
  colNorm2: Float32Array;
  /** The input tensor of the layer in the graph. */
  input: string;
}

export interface RealLayers {
  layers: RealLayer[];
  /** What was used, to print with every number. */
  protocol: CalibrationOptions & { model: string; text: string; tokens: number };
  seconds: { tokenize: number; calibrate: number };
}

/** Collects every prunable linear layer of `modelPath` with its calibration Hessian. */
export async function collectRealLayers(modelPath: string, textPath: string, engine: Engine, opts: CalibrationOptions = DEFAULT_CALIBRATION): Promise<RealLayers> {
  const t0 = performance.now();
  const tok = loadTokenizer(path.dirname(modelPath));
  const windows = calibrationWindows(textPath, tok, opts);
  const t1 = performance.now();

  const model = decodeModel(readFileSync(modelPath));
  const refs = findLinearLayers(model);
  const inputs = [...new Set(refs.map((r) => r.input))];
  const colsOf = new Map(refs.map((r) => [r.input, r.cols]));
  const kernel = await engine.kernel(withExtraOutputs(model, inputs));
  const acc = new Map(inputs.map((name) => [name, new HessianAccumulator(colsOf.get(name) as number, engine)]));

  for (let s0 = 0; s0 < windows.length; s0 += opts.batch) {
    const batch = windows.slice(s0, s0 + opts.batch);
    const ids = BigInt64Array.from(batch.flat(), (x) => BigInt(x));
    const dims = [batch.length, opts.seqlen];
    const out = await kernel.run({
      input_ids: new ort.Tensor('int64', ids, dims),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), dims),
    });
    for (const name of inputs) {
      const t = out[name];
      const cols = colsOf.get(name) as number;
      if (t.type !== 'float32' || t.dims.length !== 3 || t.dims[0] !== batch.length || t.dims[1] !== opts.seqlen || t.dims[2] !== cols) {
        throw new Error(`layer input ${name}: got ${t.type} [${t.dims.join(', ')}], expected float32 [${batch.length}, ${opts.seqlen}, ${cols}]`);
      }
      // (batch, seqlen, cols) row-major is already (tokens, cols).
      await (acc.get(name) as HessianAccumulator).addBatch(t.data as Float32Array, batch.length);
    }
  }
  const t2 = performance.now();

  const layers = refs.map((r) => {
    const a = acc.get(r.input) as HessianAccumulator;
    return { name: r.name, rows: r.rows, cols: r.cols, W: r.W, H: a.H, colNorm2: a.colNorm2, input: r.input };
  });
  return {
    layers,
    protocol: { ...opts, model: path.relative(fixturesDir, modelPath), text: path.relative(fixturesDir, textPath), tokens: windows.length * opts.seqlen },
    seconds: { tokenize: (t1 - t0) / 1000, calibrate: (t2 - t1) / 1000 },
  };
}
