// An independent float64 forward of HF LlamaForCausalLM (eager maths), shared by the builder and checkpoint tests.

import type { LlamaConfig, LlamaTensor } from '../../src/backend/models/llama';

/** Independent float64 forward of LlamaForCausalLM (HF eager maths), logits [B, S, V] for the real tokens only
 *  (padded query positions are left NaN: the graph's values there are a convention, not checked). */
export function referenceForward(
  config: LlamaConfig, W: Map<string, LlamaTensor>, ids: number[][], mask: number[][],
  /** Replaces the SwiGLU MLP of layer l (the MoE references): y is the post-attention norm's output. */
  mlp?: (y: Float64Array, layer: number) => Float64Array,
): Float64Array {
  const hd = config.hidden_size;
  const H = config.num_attention_heads;
  const KV = config.num_key_value_heads ?? H;
  const D = config.head_dim ?? hd / H;
  const V = config.vocab_size;
  const eps = config.rms_norm_eps ?? 1e-6;
  const theta = config.rope_theta ?? 10000;
  // rope_scaling 'linear' divides every frequency (positions) by its factor.
  const ropeFactor = config.rope_scaling && (config.rope_scaling.rope_type ?? config.rope_scaling.type) === 'linear' ? (config.rope_scaling.factor as number) : 1;
  const get = (n: string): Float32Array => (W.get(n) as LlamaTensor).data;
  const has = (n: string): boolean => W.has(n);
  /** y = W x + b for W [out, in]. */
  const lin = (x: Float64Array, name: string, out: number): Float64Array => {
    const w = get(`${name}.weight`);
    const inp = x.length;
    const y = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      let s = has(`${name}.bias`) ? get(`${name}.bias`)[o] : 0;
      for (let i = 0; i < inp; i++) s += w[o * inp + i] * x[i];
      y[o] = s;
    }
    return y;
  };
  const rms = (x: Float64Array, name: string): Float64Array => {
    let ms = 0;
    for (const v of x) ms += v * v;
    const r = 1 / Math.sqrt(ms / x.length + eps);
    const w = get(name);
    return x.map((v, i) => w[i] * v * r);
  };
  const rope = (x: Float64Array, heads: number, pos: number): Float64Array => {
    const y = new Float64Array(x.length);
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < D; i++) {
        const f = i % (D / 2);
        const a = pos / theta ** ((2 * f) / D) / ropeFactor;
        const rot = i < D / 2 ? -x[h * D + i + D / 2] : x[h * D + i - D / 2];
        y[h * D + i] = x[h * D + i] * Math.cos(a) + rot * Math.sin(a);
      }
    }
    return y;
  };
  const B = ids.length;
  const S = ids[0].length;
  const out = new Float64Array(B * S * V).fill(NaN);
  for (let b = 0; b < B; b++) {
    const pos: number[] = [];
    let cum = 0;
    for (let s = 0; s < S; s++) { cum += mask[b][s]; pos.push(Math.max(cum - 1, 0)); }
    let x: Float64Array[] = ids[b].map((t) => Float64Array.from(get('model.embed_tokens.weight').subarray(t * hd, (t + 1) * hd)));
    for (let l = 0; l < config.num_hidden_layers; l++) {
      const p = `model.layers.${l}`;
      const h = x.map((v) => rms(v, `${p}.input_layernorm.weight`));
      const q = h.map((v, s) => rope(lin(v, `${p}.self_attn.q_proj`, H * D), H, pos[s]));
      const k = h.map((v, s) => rope(lin(v, `${p}.self_attn.k_proj`, KV * D), KV, pos[s]));
      const vv = h.map((v) => lin(v, `${p}.self_attn.v_proj`, KV * D));
      x = x.map((res, i) => {
        const ctx = new Float64Array(H * D);
        for (let head = 0; head < H; head++) {
          const g = Math.floor(head / (H / KV));
          const keys = Array.from({ length: i + 1 }, (_, j) => j).filter((j) => mask[b][j] === 1);
          const sc = keys.map((j) => {
            let s = 0;
            for (let d = 0; d < D; d++) s += q[i][head * D + d] * k[j][g * D + d];
            return s / Math.sqrt(D);
          });
          const m = Math.max(...sc);
          const ex = sc.map((s) => Math.exp(s - m));
          const z = ex.reduce((a2, c2) => a2 + c2, 0);
          keys.forEach((j, n) => { for (let d = 0; d < D; d++) ctx[head * D + d] += (ex[n] / z) * vv[j][g * D + d]; });
        }
        const o = lin(ctx, `${p}.self_attn.o_proj`, hd);
        return res.map((r, c) => r + o[c]);
      });
      x = x.map((res) => {
        const y = rms(res, `${p}.post_attention_layernorm.weight`);
        if (mlp) {
          const m = mlp(y, l);
          return res.map((r, c) => r + m[c]);
        }
        const gate = lin(y, `${p}.mlp.gate_proj`, config.intermediate_size);
        const up = lin(y, `${p}.mlp.up_proj`, config.intermediate_size);
        const down = lin(gate.map((gv, c) => (gv / (1 + Math.exp(-gv))) * up[c]), `${p}.mlp.down_proj`, hd);
        return res.map((r, c) => r + down[c]);
      });
    }
    const headName = config.tie_word_embeddings ? 'model.embed_tokens' : 'lm_head';
    for (let s = 0; s < S; s++) {
      if (!mask[b][s]) continue;
      const y = rms(x[s], 'model.norm.weight');
      const w = get(`${headName}.weight`);
      for (let v = 0; v < V; v++) {
        let acc = 0;
        for (let c = 0; c < hd; c++) acc += w[v * hd + c] * y[c];
        out[(b * S + s) * V + v] = acc;
      }
    }
  }
  return out;
}
