// Independent float64 forwards of the LayerNorm decoder families, written from Hugging Face transformers'
// published definitions (eager attention): GPT2LMHeadModel (models/gpt2/modeling_gpt2.py) and
// GPTNeoXForCausalLM (models/gpt_neox/modeling_gpt_neox.py). Logits [B, S, V] for the real tokens only (padded
// query positions are left NaN: the graph's values there are a convention, not checked). Positions are
// max(cumsum(mask) − 1, 0), as HF's generate() computes them for padded batches.

export type Weights = ReadonlyMap<string, Float32Array>;

export function getter(W: Weights): (name: string) => Float32Array {
  return (name) => {
    const t = W.get(name);
    if (!t) throw new Error(`reference: no tensor ${name}`);
    return t;
  };
}

/** y = W·x + b for W [out, in] (nn.Linear). */
export function linear(x: Float64Array, w: Float32Array, b?: Float32Array): Float64Array {
  const inp = x.length;
  const y = new Float64Array(w.length / inp);
  for (let o = 0; o < y.length; o++) {
    let s = b ? b[o] : 0;
    for (let i = 0; i < inp; i++) s += w[o * inp + i] * x[i];
    y[o] = s;
  }
  return y;
}

/** y = x·W + b for W [in, out] (GPT-2's Conv1D). */
export function conv1d(x: Float64Array, w: Float32Array, b: Float32Array): Float64Array {
  const out = b.length;
  const y = Float64Array.from(b);
  for (let i = 0; i < x.length; i++) for (let o = 0; o < out; o++) y[o] += x[i] * w[i * out + o];
  return y;
}

export function layerNorm(x: Float64Array, g: Float32Array, b: Float32Array, eps: number): Float64Array {
  const mean = x.reduce((a, v) => a + v, 0) / x.length;
  const variance = x.reduce((a, v) => a + (v - mean) ** 2, 0) / x.length;
  const r = 1 / Math.sqrt(variance + eps);
  return x.map((v, i) => (v - mean) * r * g[i] + b[i]);
}

/** erf to ~1e-12: its Taylor series below 3, the asymptotic expansion of erfc above. */
export function erf(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 80 && Math.abs(term) > 1e-17; n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    let series = 1;
    let term = 1;
    for (let n = 1; n < 8; n++) {
      term *= -(2 * n - 1) / (2 * a * a);
      series += term;
    }
    r = 1 - (Math.exp(-a * a) / (a * Math.sqrt(Math.PI))) * series;
  }
  return x < 0 ? -r : r;
}

export function gelu(x: number, form: 'erf' | 'tanh'): number {
  if (form === 'erf') return 0.5 * x * (1 + erf(x / Math.SQRT2));
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

/** Softmax attention of query i over the visible keys: q, k, v [S][H·D] (head h at h·D); returns [H·D]. */
export function attend(q: Float64Array[], k: Float64Array[], v: Float64Array[], i: number, visible: number[], H: number, D: number, scale: number): Float64Array {
  const ctx = new Float64Array(H * D);
  for (let h = 0; h < H; h++) {
    const sc = visible.map((j) => { let s = 0; for (let d = 0; d < D; d++) s += q[i][h * D + d] * k[j][h * D + d]; return s * scale; });
    const m = Math.max(...sc);
    const ex = sc.map((s) => Math.exp(s - m));
    const z = ex.reduce((a, c) => a + c, 0);
    visible.forEach((j, n) => { for (let d = 0; d < D; d++) ctx[h * D + d] += (ex[n] / z) * v[j][h * D + d]; });
  }
  return ctx;
}

/** Positions max(cumsum(mask) − 1, 0) and, per query i, the keys it sees (j ≤ i with mask[j] = 1). */
export function positionsAndKeys(mask: number[]): { pos: number[]; keys: number[][] } {
  let cum = 0;
  const pos = mask.map((m) => { cum += m; return Math.max(cum - 1, 0); });
  const keys = mask.map((_, i) => Array.from({ length: i + 1 }, (__, j) => j).filter((j) => mask[j] === 1));
  return { pos, keys };
}

/** Logits [B, S, V] (NaN at padded positions) from each sequence's final hidden states and the head [V, width]. */
export function logitsOf(finals: Float64Array[][], mask: number[][], head: Float32Array, V: number): Float64Array {
  const S = mask[0].length;
  const out = new Float64Array(finals.length * S * V).fill(NaN);
  finals.forEach((seq, b) => seq.forEach((y, s) => {
    if (!mask[b][s]) return;
    const logits = linear(y, head);
    out.set(logits, (b * S + s) * V);
  }));
  return out;
}

const add = (a: Float64Array, ...rest: Float64Array[]): Float64Array => a.map((v, c) => rest.reduce((s, r) => s + r[c], v));

export interface Gpt2RefConfig {
  vocab_size: number; n_embd: number; n_layer: number; n_head: number; n_inner?: number | null;
  activation_function?: string; layer_norm_epsilon?: number; scale_attn_weights?: boolean;
  scale_attn_by_inverse_layer_idx?: boolean; tie_word_embeddings?: boolean;
}

/** GPT2LMHeadModel (modeling_gpt2.py): Conv1D weights [in, out], learned positions, pre-norm blocks. */
export function gpt2Reference(config: Gpt2RefConfig, W: Weights, prefix: string, ids: number[][], mask: number[][]): Float64Array {
  const get = getter(W);
  const h = config.n_embd;
  const H = config.n_head;
  const D = h / H;
  const eps = config.layer_norm_epsilon ?? 1e-5;
  const form = (config.activation_function ?? 'gelu_new') === 'gelu' ? 'erf' : 'tanh';
  const ln = (x: Float64Array, name: string) => layerNorm(x, get(`${name}.weight`), get(`${name}.bias`), eps);
  const c1 = (x: Float64Array, name: string) => conv1d(x, get(`${name}.weight`), get(`${name}.bias`));
  const finals = ids.map((seq, b) => {
    const { pos, keys } = positionsAndKeys(mask[b]);
    let x = seq.map((t, s) => add(Float64Array.from(get(`${prefix}wte.weight`).subarray(t * h, (t + 1) * h)), Float64Array.from(get(`${prefix}wpe.weight`).subarray(pos[s] * h, (pos[s] + 1) * h))));
    for (let l = 0; l < config.n_layer; l++) {
      const p = `${prefix}h.${l}`;
      const qkv = x.map((v) => c1(ln(v, `${p}.ln_1`), `${p}.attn.c_attn`));
      const [q, k, v] = [0, 1, 2].map((part) => qkv.map((t) => t.slice(part * h, (part + 1) * h)));
      let scale = config.scale_attn_weights === false ? 1 : 1 / Math.sqrt(D);
      if (config.scale_attn_by_inverse_layer_idx) scale /= l + 1;
      x = x.map((res, i) => add(res, c1(attend(q, k, v, i, keys[i], H, D, scale), `${p}.attn.c_proj`)));
      x = x.map((res) => add(res, c1(c1(ln(res, `${p}.ln_2`), `${p}.mlp.c_fc`).map((u) => gelu(u, form)), `${p}.mlp.c_proj`)));
    }
    return x.map((v) => ln(v, `${prefix}ln_f`));
  });
  return logitsOf(finals, mask, get(config.tie_word_embeddings === false ? 'lm_head.weight' : `${prefix}wte.weight`), config.vocab_size);
}

export interface NeoxRefConfig {
  vocab_size: number; hidden_size: number; num_hidden_layers: number; num_attention_heads: number;
  hidden_act?: string; rotary_pct?: number; rotary_emb_base?: number; layer_norm_eps?: number;
  use_parallel_residual?: boolean; attention_bias?: boolean;
}

/** GPTNeoXForCausalLM (modeling_gpt_neox.py): fused query_key_value viewed [heads, 3, head_dim], rotary on the
 *  first rotary_pct of each head (rotate_half on halves), parallel or sequential residual, untied embed_out. */
export function neoxReference(config: NeoxRefConfig, W: Weights, ids: number[][], mask: number[][]): Float64Array {
  const get = getter(W);
  const h = config.hidden_size;
  const H = config.num_attention_heads;
  const D = h / H;
  const R = Math.floor(D * (config.rotary_pct ?? 0.25));
  const base = config.rotary_emb_base ?? 10000;
  const eps = config.layer_norm_eps ?? 1e-5;
  const form = (config.hidden_act ?? 'gelu') === 'gelu' ? 'erf' : 'tanh';
  const bias = config.attention_bias ?? true;
  const ln = (x: Float64Array, name: string) => layerNorm(x, get(`${name}.weight`), get(`${name}.bias`), eps);
  const lin = (x: Float64Array, name: string, b = true) => linear(x, get(`${name}.weight`), b ? get(`${name}.bias`) : undefined);
  const rope = (x: Float64Array, pos: number): Float64Array => {
    const y = Float64Array.from(x);
    for (let hh = 0; hh < H; hh++) {
      for (let i = 0; i < R; i++) {
        const a = pos / base ** ((2 * (i % (R / 2))) / R);
        const rot = i < R / 2 ? -x[hh * D + i + R / 2] : x[hh * D + i - R / 2];
        y[hh * D + i] = x[hh * D + i] * Math.cos(a) + rot * Math.sin(a);
      }
    }
    return y;
  };
  const finals = ids.map((seq, b) => {
    const { pos, keys } = positionsAndKeys(mask[b]);
    let x: Float64Array[] = seq.map((t) => Float64Array.from(get('gpt_neox.embed_in.weight').subarray(t * h, (t + 1) * h)));
    for (let l = 0; l < config.num_hidden_layers; l++) {
      const p = `gpt_neox.layers.${l}`;
      const qkv = x.map((v) => lin(ln(v, `${p}.input_layernorm`), `${p}.attention.query_key_value`, bias));
      const [q, k, v] = [0, 1, 2].map((part) => qkv.map((t) => {
        const o = new Float64Array(h);
        for (let hh = 0; hh < H; hh++) o.set(t.subarray(hh * 3 * D + part * D, hh * 3 * D + (part + 1) * D), hh * D);
        return o;
      }));
      const qr = q.map((t, s) => rope(t, pos[s]));
      const kr = k.map((t, s) => rope(t, pos[s]));
      const attn = x.map((_, i) => lin(attend(qr, kr, v, i, keys[i], H, D, 1 / Math.sqrt(D)), `${p}.attention.dense`, bias));
      const mlp = (y: Float64Array) => lin(lin(ln(y, `${p}.post_attention_layernorm`), `${p}.mlp.dense_h_to_4h`).map((u) => gelu(u, form)), `${p}.mlp.dense_4h_to_h`);
      if (config.use_parallel_residual ?? true) x = x.map((res, i) => add(res, attn[i], mlp(res)));
      else x = x.map((res, i) => { const y = add(res, attn[i]); return add(y, mlp(y)); });
    }
    return x.map((v) => ln(v, 'gpt_neox.final_layer_norm'));
  });
  return logitsOf(finals, mask, get('embed_out.weight'), config.vocab_size);
}
