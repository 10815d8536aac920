// Mamba-1 ONNX graph builder: a Hugging Face MambaForCausalLM (config.json + weights by HF tensor name) in the
// HF [out, in] layout, like the OPT builder and the Llama builder's 'out_in' mode: each projection a
// Gemm(transB=1) on the 2-D stream [batch·seq, width], weights referenced where they are stored, initializers
// and node scopes named as in the checkpoint (`/backbone/layers.3/mixer/in_proj/Gemm` reads
// `backbone.layers.3.mixer.in_proj.weight`), so discovery and segmentation treat it like any exported block model.
//
// The maths is HF's slow path (modeling_mamba.py, MambaMixer.slow_forward), per block:
//   h += out_proj(y · silu(z)) with, from u = RMSNorm(h):
//   [x, z] = in_proj(u); x = silu(causal depthwise conv1d(x · mask)) · mask;
//   [dt, B, C] = x_proj(x); Δ = softplus(dt_proj(dt)) (torch's threshold 20: Δ = v above it);
//   A = −exp(A_log); the selective scan s_t = exp(Δ_t·A) ⊙ s_{t−1} + (Δ_t·x_t) ⊗ B_t, y_t = s_t·C_t
//   (state [batch, d_inner, d_state], zero at t = 0); y += D·x.
// Then norm_f and the LM head (tied to the embedding by default).
//
// The scan is an ONNX Scan over time on time-major [S, B, …] inputs, state [B, d_inner, d_state] zero at t = 0, so
// any sequence length works. By default the decays exp(Δ·A) and inputs (Δ·x)⊗B are computed for every step at once
// before it and its body reads nothing from the enclosing graph; BuildMambaOptions.scan 'fused' computes them in
// the body instead, reading A from the enclosing graph (as exporters' bodies capture weights; the tests prune that
// form as an ONNX file). Everything else is ordinary ai.onnx opset 17 (Conv with group = d_inner for the depthwise
// conv, Exp/Log for softplus, Sigmoid, …).
//
// Prunable (by the generic discovery): in_proj, x_proj, dt_proj, out_proj — the four Gemms with 2-D weights.
// conv1d (a [d_inner, 1, K] depthwise kernel) stays dense by default: K taps per channel leave OBS/SparseGPT little
// to compensate with, and it is a sliver of the weights. The discovery finds it as an opt-in depthwise conv, so
// keepDense.depthwiseConv false prunes it per channel (methods/depthwise.ts); nothing here is Mamba-specific for
// that. A_log and D (per-channel/state dynamics: zeros in A_log make decay exp(−Δ), not "no connection") stay dense.

import { valueInfo } from '../onnx/graph';
import { AttributeType, DataType, GraphProto, ModelProto, NodeProto } from '../onnx/proto';
import { Dim, expected, ExpectedTensor, shapesOf } from './expected';
import { configPositiveInt } from './configFields';
import { causalLmModel, Emitter, familyBuilder } from './emitter';
import type { LlamaWeights } from './weights';

/** The fields of a Hugging Face MambaConfig the builder reads; optional ones take HF's defaults. */
export interface MambaConfig {
  model_type?: string;
  vocab_size: number;
  hidden_size: number;
  /** d_state (default 16). */
  state_size?: number;
  num_hidden_layers: number;
  /** Default 1e-5. */
  layer_norm_epsilon?: number;
  /** Default 2: d_inner = expand · hidden_size. */
  expand?: number;
  /** Default 4. */
  conv_kernel?: number;
  /** Default "auto" = ceil(hidden_size / 16). */
  time_step_rank?: number | 'auto';
  /** Biases on in_proj/out_proj (default false). */
  use_bias?: boolean;
  /** Bias on conv1d (default true). */
  use_conv_bias?: boolean;
  /** Default silu (the only one supported). */
  hidden_act?: string;
  /** Default true. */
  tie_word_embeddings?: boolean;
  intermediate_size?: number;
}

export interface ResolvedMambaConfig {
  vocabSize: number;
  hiddenSize: number;
  stateSize: number;
  layers: number;
  eps: number;
  inner: number;
  convKernel: number;
  dtRank: number;
  bias: boolean;
  convBias: boolean;
  tied: boolean;
}

function positiveInt(value: unknown, field: string): number {
  return configPositiveInt('Mamba', value, field);
}

export function resolveMambaConfig(config: MambaConfig): ResolvedMambaConfig {
  const hiddenSize = positiveInt(config.hidden_size, 'hidden_size');
  const expand = config.expand ?? 2;
  if (typeof expand !== 'number' || !(expand > 0)) throw new Error(`Mamba config: expand must be a positive number, got ${JSON.stringify(expand)}`);
  const inner = positiveInt(Math.trunc(expand * hiddenSize), 'expand · hidden_size');
  if (config.intermediate_size !== undefined && config.intermediate_size !== inner) {
    throw new Error(`Mamba config: intermediate_size ${config.intermediate_size} is not expand · hidden_size = ${inner}`);
  }
  const rank = config.time_step_rank ?? 'auto';
  const dtRank = rank === 'auto' ? Math.ceil(hiddenSize / 16) : positiveInt(rank, 'time_step_rank');
  const act = config.hidden_act ?? 'silu';
  if (act !== 'silu' && act !== 'swish') throw new Error(`Mamba config: hidden_act '${act}' is not supported (only silu)`);
  const eps = config.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) throw new Error(`Mamba config: layer_norm_epsilon must be a positive number, got ${JSON.stringify(eps)}`);
  return {
    vocabSize: positiveInt(config.vocab_size, 'vocab_size'),
    hiddenSize,
    stateSize: positiveInt(config.state_size ?? 16, 'state_size'),
    layers: positiveInt(config.num_hidden_layers, 'num_hidden_layers'),
    eps,
    inner,
    convKernel: positiveInt(config.conv_kernel ?? 4, 'conv_kernel'),
    dtRank,
    bias: config.use_bias ?? false,
    convBias: config.use_conv_bias ?? true,
    tied: config.tie_word_embeddings ?? true,
  };
}

/** Every HF tensor a model with this config reads, in checkpoint order, each dim labelled with its config field. */
export function* mambaExpectedTensors(config: MambaConfig | ResolvedMambaConfig): Generator<ExpectedTensor> {
  const c = 'hiddenSize' in config ? config : resolveMambaConfig(config);
  const h: Dim = [c.hiddenSize, 'hidden_size'];
  const d: Dim = [c.inner, 'expand · hidden_size'];
  const n: Dim = [c.stateSize, 'state_size'];
  const dt: Dim = [c.dtRank, 'time_step_rank'];
  const vocab: Dim = [c.vocabSize, 'vocab_size'];
  yield expected('backbone.embeddings.weight', [vocab, h]);
  for (let i = 0; i < c.layers; i++) {
    const p = `backbone.layers.${i}`;
    const m = `${p}.mixer`;
    yield expected(`${p}.norm.weight`, [h], 'num_hidden_layers');
    yield expected(`${m}.in_proj.weight`, [[2 * c.inner, '2 · expand · hidden_size'], h]);
    if (c.bias) yield expected(`${m}.in_proj.bias`, [[2 * c.inner, '2 · expand · hidden_size']], 'use_bias');
    yield expected(`${m}.conv1d.weight`, [d, [1, 'depthwise'], [c.convKernel, 'conv_kernel']]);
    if (c.convBias) yield expected(`${m}.conv1d.bias`, [d], 'use_conv_bias');
    yield expected(`${m}.x_proj.weight`, [[c.dtRank + 2 * c.stateSize, 'time_step_rank + 2 · state_size'], d]);
    yield expected(`${m}.dt_proj.weight`, [d, dt]);
    yield expected(`${m}.dt_proj.bias`, [d]);
    yield expected(`${m}.A_log`, [d, n]);
    yield expected(`${m}.D`, [d]);
    yield expected(`${m}.out_proj.weight`, [h, d]);
    if (c.bias) yield expected(`${m}.out_proj.bias`, [h], 'use_bias');
  }
  yield expected('backbone.norm_f.weight', [h]);
  if (!c.tied) yield expected('lm_head.weight', [vocab, h], 'tie_word_embeddings');
}

/** Every HF tensor a model with this config reads, with its dims ([out, in] for Linear weights). */
export function mambaTensorShapes(config: MambaConfig | ResolvedMambaConfig): Map<string, number[]> {
  return shapesOf(mambaExpectedTensors(config));
}

export interface BuildMambaOptions {
  /** 'materialized' (default): exp(Δ·A) and (Δ·x)⊗B computed for every step before the Scan ([S, B, d, n] each),
   *  the body only s = a ⊙ s + b and the readout; 'fused': the body computes them per step from Δ_t, Δ_t·x_t, B_t
   *  (smaller tensors, A read from the enclosing scope). Same maths; see docs/BENCHMARKS.md for the speeds. */
  scan?: 'materialized' | 'fused';
}

/** The Scan body over state s [B, d, n] (see BuildMambaOptions): s' = a ⊙ s + b, y = s'·C [B, d, 1].
 *  Inputs and outputs carry their shapes: onnxruntime's Scan needs the outputs' shapes, and a pipeline segment's
 *  inputs (where they would otherwise be inferred from) have none. */
function scanBody(scope: string, d: number, n: number, fused: { A: string } | null): GraphProto {
  const e = new Emitter();
  const f = (name: string, dims: (number | string)[]) => valueInfo(name, DataType.FLOAT, ['batch_size', ...dims]);
  let a = 'a_t';
  let b = 'b_t';
  let inputs = [f('state_in', [d, n]), f('a_t', [d, n]), f('b_t', [d, n]), f('c_t', [n, 1])];
  if (fused) {
    a = e.op1(scope, 'Exp', [e.op1(scope, 'Mul', ['dt_t', fused.A])]);
    b = e.op1(scope, 'Mul', ['dx_t', 'b_t']);
    inputs = [f('state_in', [d, n]), f('dt_t', [d, 1]), f('dx_t', [d, 1]), f('b_t', [1, n]), f('c_t', [n, 1])];
  }
  const decayed = e.op1(scope, 'Mul', [a, 'state_in']);
  e.nodes.push({ name: `${scope}/Add`, opType: 'Add', input: [decayed, b], output: ['state_out'], attribute: [] });
  e.nodes.push({ name: `${scope}/MatMul`, opType: 'MatMul', input: ['state_out', 'c_t'], output: ['y_t'], attribute: [] });
  return {
    name: 'selective_scan',
    node: e.nodes,
    initializer: [],
    input: inputs,
    output: [f('state_out', [d, n]), f('y_t', [d, 1])],
    valueInfo: [],
  };
}

/**
 * Builds the ONNX graph of a MambaForCausalLM: inputs `input_ids`, `attention_mask` (int64 [batch, seq]), output
 * `logits` (float [batch, seq, vocab]). Throws, naming the tensor, when a weight is missing or has the wrong dims.
 */
export function buildMambaModel(config: MambaConfig, weights: LlamaWeights, options: BuildMambaOptions = {}): ModelProto {
  const fused = options.scan === 'fused';
  const c = resolveMambaConfig(config);
  const { e, w, linear } = familyBuilder('Mamba', mambaTensorShapes(c), weights);
  const h = c.hiddenSize;
  const d = c.inner;
  const n = c.stateSize;
  const K = c.convKernel;
  const scope = '/backbone';

  const rmsNorm = (sc: string, x: string, name: string): string => {
    const mean = e.op1(sc, 'ReduceMean', [e.op1(sc, 'Mul', [x, x])], { axes: [-1], keepdims: 1 });
    const inv = e.op1(sc, 'Reciprocal', [e.op1(sc, 'Sqrt', [e.op1(sc, 'Add', [mean, e.scalar(sc, c.eps)])])]);
    return e.op1(sc, 'Mul', [e.weight(name, w(name)), e.op1(sc, 'Mul', [x, inv])]);
  };
  const silu = (sc: string, x: string): string => e.op1(sc, 'Mul', [x, e.op1(sc, 'Sigmoid', [x])]);
  const slice = (sc: string, x: string, from: number, to: number): string =>
    e.op1(sc, 'Slice', [x, e.ints(sc, [from]), e.ints(sc, [to]), e.ints(sc, [-1])]);

  // --- Shared by every block (the pipeline's prefix): shapes, the mask column, the zero initial state.
  const batchSeq = e.op1(scope, 'Shape', ['input_ids']); // [B, S]
  const batch = slice(scope, batchSeq, 0, 1);
  const maskCol = e.op1(scope, 'Reshape', [e.op1(scope, 'Cast', ['attention_mask'], { to: DataType.FLOAT }), e.ints(scope, [-1, 1])]); // [B·S, 1]
  const bsd = e.op1(scope, 'Concat', [batchSeq, e.ints(scope, [d])], { axis: 0 }); // [B, S, d]
  const bsn = e.op1(scope, 'Concat', [batchSeq, e.ints(scope, [n])], { axis: 0 }); // [B, S, n]
  const zero = { name: '', dims: [1], dataType: DataType.FLOAT, rawData: new Uint8Array(4) };
  const state0 = e.op1(scope, 'ConstantOfShape', [e.op1(scope, 'Concat', [batch, e.ints(scope, [d, n])], { axis: 0 })], { value: zero }); // [B, d, n]

  const embedName = e.weight('backbone.embeddings.weight', w('backbone.embeddings.weight'));
  let hidden = e.op1(`${scope}/embeddings`, 'Reshape', [e.op1(`${scope}/embeddings`, 'Gather', [embedName, 'input_ids'], { axis: 0 }), e.ints(`${scope}/embeddings`, [-1, h])]);

  for (let i = 0; i < c.layers; i++) {
    const ls = `${scope}/layers.${i}`;
    const ms = `${ls}/mixer`;
    const p = `backbone.layers.${i}`;
    const m = `${p}.mixer`;
    const u = rmsNorm(`${ls}/norm`, hidden, `${p}.norm.weight`);
    const xz = linear(`${ms}/in_proj`, u, `${m}.in_proj`, c.bias); // [B·S, 2d]
    const xIn = e.op1(ms, 'Mul', [slice(ms, xz, 0, d), maskCol]);
    const z = slice(ms, xz, d, 2 * d);

    // Causal depthwise conv over time: [B, d, S], K − 1 zeros on the left.
    const cs = `${ms}/conv1d`;
    const xBdS = e.op1(cs, 'Transpose', [e.op1(cs, 'Reshape', [xIn, bsd])], { perm: [0, 2, 1] });
    const convInputs = [xBdS, e.weight(`${m}.conv1d.weight`, w(`${m}.conv1d.weight`))];
    if (c.convBias) convInputs.push(e.weight(`${m}.conv1d.bias`, w(`${m}.conv1d.bias`)));
    const conv = e.op1(cs, 'Conv', convInputs, { group: d, kernel_shape: [K], pads: [K - 1, 0] });
    const convFlat = e.op1(cs, 'Reshape', [e.op1(cs, 'Transpose', [conv], { perm: [0, 2, 1] }), e.ints(cs, [-1, d])]);
    const x = e.op1(ms, 'Mul', [silu(`${ms}/act`, convFlat), maskCol]); // [B·S, d]

    const dbc = linear(`${ms}/x_proj`, x, `${m}.x_proj`, false); // [B·S, r + 2n]
    const dtLow = slice(ms, dbc, 0, c.dtRank);
    const Bm = slice(ms, dbc, c.dtRank, c.dtRank + n);
    const Cm = slice(ms, dbc, c.dtRank + n, c.dtRank + 2 * n);
    const dtRaw = linear(`${ms}/dt_proj`, dtLow, `${m}.dt_proj`, true); // [B·S, d]
    // softplus as log(1 + exp(v)): onnxruntime's Softplus kernel is several times slower than the three ops.
    const softplus = e.op1(ms, 'Log', [e.op1(ms, 'Add', [e.op1(ms, 'Exp', [dtRaw]), e.scalar(ms, 1)])]);
    const dt = e.op1(ms, 'Where', [e.op1(ms, 'Greater', [dtRaw, e.scalar(ms, 20)]), dtRaw, softplus]);
    const A = e.op1(ms, 'Neg', [e.op1(ms, 'Exp', [e.weight(`${m}.A_log`, w(`${m}.A_log`))])]); // [d, n]

    // Time-major step inputs for the Scan ([S, B, …]); see BuildMambaOptions.
    const ss = `${ms}/scan`;
    const timeMajor = (x2: string, shape: string, axis: number): string =>
      e.op1(ss, 'Unsqueeze', [e.op1(ss, 'Transpose', [e.op1(ss, 'Reshape', [x2, shape])], { perm: [1, 0, 2] }), e.ints(ss, [axis])]);
    const dtT = timeMajor(dt, bsd, 3); // [S, B, d, 1]
    const dxT = timeMajor(e.op1(ss, 'Mul', [dt, x]), bsd, 3); // [S, B, d, 1]
    const bT = timeMajor(Bm, bsn, 2); // [S, B, 1, n]
    const cT = timeMajor(Cm, bsn, 3); // [S, B, n, 1]
    const stepInputs = fused ? [dtT, dxT, bT, cT] : [e.op1(ss, 'Exp', [e.op1(ss, 'Mul', [dtT, A])]), e.op1(ss, 'Mul', [dxT, bT]), cT];
    const [, ys] = e.op(ss, 'Scan', [state0, ...stepInputs], {}, 2); // ys: [S, B, d, 1]
    const scanNode = e.nodes[e.nodes.length - 1] as NodeProto;
    scanNode.attribute.push(
      { name: 'body', type: AttributeType.GRAPH, g: scanBody(`${ss}/body`, d, n, fused ? { A } : null) },
      { name: 'num_scan_inputs', type: AttributeType.INT, i: stepInputs.length },
    );
    const yFlat = e.op1(ss, 'Reshape', [e.op1(ss, 'Transpose', [ys], { perm: [1, 0, 2, 3] }), e.ints(ss, [-1, d])]); // [B·S, d]

    const yD = e.op1(ms, 'Add', [yFlat, e.op1(ms, 'Mul', [x, e.weight(`${m}.D`, w(`${m}.D`))])]);
    const gated = e.op1(ms, 'Mul', [yD, silu(`${ms}/act`, z)]);
    hidden = e.op1(ls, 'Add', [hidden, linear(`${ms}/out_proj`, gated, `${m}.out_proj`, c.bias)]);
  }

  const normed = rmsNorm(`${scope}/norm_f`, hidden, 'backbone.norm_f.weight');
  const flat = c.tied ? e.op1('/lm_head', 'Gemm', [normed, embedName], { transB: 1 }) : e.gemm('/lm_head', normed, 'lm_head.weight', w('lm_head.weight'));
  const shape = e.op1('/lm_head', 'Concat', [batchSeq, e.ints('/lm_head', [c.vocabSize])], { axis: 0 });
  e.nodes.push({ name: '/lm_head/Reshape', opType: 'Reshape', input: [flat, shape], output: ['logits'], attribute: [] });

  return causalLmModel(e, 'mamba', `MambaForCausalLM (${c.layers} layers, hidden ${h}, d_inner ${d}, d_state ${n}, dt_rank ${c.dtRank})`,
    { vocabSize: c.vocabSize, weightLayout: 'out_in', tied: c.tied });
}
