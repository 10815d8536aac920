// A float64 MambaForCausalLM forward written from HF's slow path (modeling_mamba.py MambaMixer.slow_forward), token
// by token with plain loops and the recurrence in its sequential form: the oracle for generated Mamba folders.

export interface MambaRefConfig {
  vocab: number;
  hidden: number;
  state: number;
  inner: number;
  kernel: number;
  dtRank: number;
  layers: number;
  eps: number;
  bias: boolean;
  convBias: boolean;
  tied: boolean;
}

const silu = (v: number): number => v / (1 + Math.exp(-v));
const softplus = (v: number): number => (v > 20 ? v : Math.log1p(Math.exp(v)));

/** y = W x (+ b) for W [out, in] row-major. */
function linear(W: Float32Array, b: Float32Array | undefined, x: Float64Array, out: number): Float64Array {
  const inp = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o] : 0;
    for (let i = 0; i < inp; i++) s += W[o * inp + i] * x[i];
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ms = 0;
  for (const v of x) ms += v * v;
  const inv = 1 / Math.sqrt(ms / x.length + eps);
  return x.map((v, i) => w[i] * v * inv);
}

/** Logits [batch][seq][vocab] for `ids` with `mask` (1 = token, 0 = padding). */
export function mambaReferenceForward(c: MambaRefConfig, W: ReadonlyMap<string, Float32Array>, ids: number[][], mask: number[][]): number[][][] {
  const w = (name: string): Float32Array => {
    const t = W.get(name);
    if (!t) throw new Error(`reference: ${name} missing`);
    return t;
  };
  const d = c.inner;
  const n = c.state;
  return ids.map((row, bi) => {
    const S = row.length;
    const m = mask[bi];
    const emb = w('backbone.embeddings.weight');
    let hs: Float64Array[] = row.map((t) => Float64Array.from(emb.subarray(t * c.hidden, (t + 1) * c.hidden)));
    for (let l = 0; l < c.layers; l++) {
      const p = `backbone.layers.${l}.mixer`;
      const xs: Float64Array[] = [];
      const zs: Float64Array[] = [];
      for (let t = 0; t < S; t++) {
        const xz = linear(w(`${p}.in_proj.weight`), c.bias ? w(`${p}.in_proj.bias`) : undefined, rmsNorm(hs[t], w(`backbone.layers.${l}.norm.weight`), c.eps), 2 * d);
        xs.push(xz.slice(0, d).map((v) => v * m[t]));
        zs.push(xz.slice(d));
      }
      const convW = w(`${p}.conv1d.weight`);
      const conv: Float64Array[] = [];
      for (let t = 0; t < S; t++) {
        const y = new Float64Array(d);
        for (let ch = 0; ch < d; ch++) {
          let s = c.convBias ? w(`${p}.conv1d.bias`)[ch] : 0;
          for (let k = 0; k < c.kernel; k++) {
            const tt = t - (c.kernel - 1) + k;
            if (tt >= 0) s += convW[ch * c.kernel + k] * xs[tt][ch];
          }
          y[ch] = silu(s) * m[t];
        }
        conv.push(y);
      }
      const A = Float64Array.from(w(`${p}.A_log`), (v) => -Math.exp(v));
      const D = w(`${p}.D`);
      const state = new Float64Array(d * n);
      const next: Float64Array[] = [];
      for (let t = 0; t < S; t++) {
        const x = conv[t];
        const dbc = linear(w(`${p}.x_proj.weight`), undefined, x, c.dtRank + 2 * n);
        const dt = linear(w(`${p}.dt_proj.weight`), w(`${p}.dt_proj.bias`), dbc.slice(0, c.dtRank), d).map(softplus);
        const B = dbc.slice(c.dtRank, c.dtRank + n);
        const C = dbc.slice(c.dtRank + n);
        const y = new Float64Array(d);
        for (let ch = 0; ch < d; ch++) {
          let s = 0;
          for (let j = 0; j < n; j++) {
            const k = ch * n + j;
            state[k] = Math.exp(dt[ch] * A[k]) * state[k] + dt[ch] * B[j] * x[ch];
            s += state[k] * C[j];
          }
          y[ch] = (s + x[ch] * D[ch]) * silu(zs[t][ch]);
        }
        const out = linear(w(`${p}.out_proj.weight`), c.bias ? w(`${p}.out_proj.bias`) : undefined, y, c.hidden);
        next.push(hs[t].map((v, i) => v + out[i]));
      }
      hs = next;
    }
    const head = c.tied ? w('backbone.embeddings.weight') : w('lm_head.weight');
    return hs.map((h) => Array.from(linear(head, undefined, rmsNorm(h, w('backbone.norm_f.weight'), c.eps), c.vocab)));
  });
}
