// An independent float64 forward of Hugging Face's Llama-like causal LMs (eager maths), shared by the builder and
// checkpoint tests. Written from transformers' modeling files (v4.5x), not from src/:
//  - LlamaForCausalLM (models/llama/modeling_llama.py): the base; Mistral and Qwen2 (modeling_mistral.py,
//    modeling_qwen2.py) add sliding windows, Qwen2 q/k/v biases;
//  - Qwen3 (models/qwen3/modeling_qwen3.py): q_norm / k_norm, RMSNorm over each head's head_dim, before rotary;
//  - Gemma (models/gemma/modeling_gemma.py): GemmaRMSNorm x̂·(1 + w); embeddings × √hidden_size; GeGLU,
//    gelu_pytorch_tanh; Gemma 2 (gemma2/modeling_gemma2.py): post_attention_layernorm on the attention output,
//    pre_/post_feedforward_layernorm, scaling query_pre_attn_scalar^−½, attn and final logit soft-capping
//    cap·tanh(x/cap), sliding windows on even layers; Gemma 3 (gemma3/modeling_gemma3.py, Gemma3ForCausalLM):
//    + q_norm/k_norm (GemmaRMSNorm), every sliding_window_pattern-th layer global, sliding layers' rotary from
//    rope_local_base_freq without scaling;
//  - Phi-3 (models/phi3/modeling_phi3.py): fused qkv_proj rows [q | k | v], gate_up_proj rows [gate | up],
//    partial rotary (first head_dim·partial_rotary_factor dims);
//  - sliding windows (masking_utils.py sliding_window_overlay): key j visible to query i iff i − window < j ≤ i;
//  - rope types (modeling_rope_utils.py): default, linear, llama3, dynamic (base rescaled at sequence length L =
//    max position + 1 when L > max_position_embeddings), yarn, longrope (short factors, long ones when L exceeds
//    original_max_position_embeddings as Phi-3's rotary embedding updates them; cos/sin × attention factor).

import type { LlamaConfig, LlamaTensor } from '../../src/backend/models/llama';

/** Inverse frequencies and cos/sin factor of `config`'s rotary embedding over `dim` dims at length L. */
export function referenceRope(config: LlamaConfig, dim: number, theta: number, L: number, scaled = true): { inv: number[]; attention: number } {
  const rs = scaled ? config.rope_scaling ?? undefined : undefined;
  const type = rs ? (rs.rope_type ?? rs.type ?? 'default') : 'default';
  const base = (b: number) => Array.from({ length: dim / 2 }, (_, i) => 1 / b ** ((2 * i) / dim));
  const maxPos = config.max_position_embeddings ?? 2048;
  if (!rs || type === 'default') return { inv: base(theta), attention: 1 };
  const factor = rs.factor as number;
  if (type === 'linear') return { inv: base(theta).map((f) => f / factor), attention: 1 };
  if (type === 'llama3') {
    const old = rs.original_max_position_embeddings as number;
    const lo = rs.low_freq_factor as number;
    const hi = rs.high_freq_factor as number;
    return {
      inv: base(theta).map((f) => {
        const wl = (2 * Math.PI) / f;
        if (wl < old / hi) return f;
        if (wl > old / lo) return f / factor;
        const s = (old / wl - lo) / (hi - lo);
        return (1 - s) * (f / factor) + s * f;
      }),
      attention: 1,
    };
  }
  if (type === 'dynamic') {
    const len = Math.max(L, maxPos);
    return { inv: base(theta * ((factor * len) / maxPos - (factor - 1)) ** (dim / (dim - 2))), attention: 1 };
  }
  if (type === 'yarn') {
    const orig = rs.original_max_position_embeddings ?? maxPos;
    const corr = (rot: number) => (dim * Math.log(orig / (rot * 2 * Math.PI))) / (2 * Math.log(theta));
    const trunc = rs.truncate ?? true;
    const low = Math.max(trunc ? Math.floor(corr(rs.beta_fast ?? 32)) : corr(rs.beta_fast ?? 32), 0);
    const high = Math.min(trunc ? Math.ceil(corr(rs.beta_slow ?? 1)) : corr(rs.beta_slow ?? 1), dim - 1);
    const inv = base(theta).map((f, i) => {
      const ramp = Math.min(Math.max((i - low) / (high === low ? 0.001 : high - low), 0), 1);
      return (f / factor) * ramp + f * (1 - ramp);
    });
    const mscale = (s: number, m = 1) => (s <= 1 ? 1 : 0.1 * m * Math.log(s) + 1);
    const attention = rs.attention_factor ?? (rs.mscale && rs.mscale_all_dim ? mscale(factor, rs.mscale) / mscale(factor, rs.mscale_all_dim) : mscale(factor));
    return { inv, attention };
  }
  if (type === 'longrope' || type === 'su') {
    // Phi-3 states the pretrained context at the top level; others give rope_scaling.factor.
    const orig = config.original_max_position_embeddings ?? maxPos;
    const f = config.original_max_position_embeddings ? maxPos / orig : rs.factor ?? 1;
    const ext = L > orig ? (rs.long_factor as number[]) : (rs.short_factor as number[]);
    return { inv: base(theta).map((x, i) => x / ext[i]), attention: f <= 1 ? 1 : Math.sqrt(1 + Math.log(f) / Math.log(orig)) };
  }
  throw new Error(`reference: rope type ${type}`);
}

/** Whether layer `l` attends within a sliding window, as each family's config derives its layer types. */
function slides(config: LlamaConfig, l: number): boolean {
  if (config.sliding_window == null) return false;
  if (config.layer_types) return config.layer_types[l] === 'sliding_attention';
  switch (config.model_type) {
    case 'mistral': case 'phi3': return true;
    case 'qwen2': case 'qwen3': return config.use_sliding_window === true && l >= (config.max_window_layers ?? 0);
    case 'gemma2': return l % 2 === 0;
    case 'gemma3_text': return (l + 1) % (config.sliding_window_pattern ?? 6) !== 0;
    default: return false;
  }
}

/** x rounded to bfloat16 (nearest even), as torch.tensor(x, dtype=torch.bfloat16) stores it. */
function bf16(x: number): number {
  const f = Float32Array.of(x);
  const u = new Uint32Array(f.buffer);
  u[0] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) & 0xffff0000;
  return f[0];
}

/** Independent float64 forward of a Llama-like CausalLM (HF eager maths), logits [B, S, V] for the real tokens only
 *  (padded query positions are left NaN: the graph's values there are a convention, not checked). `embedDtype`:
 *  the embedding's stored type, in which Gemma computes its √hidden normalizer. */
export function referenceForward(
  config: LlamaConfig, W: Map<string, LlamaTensor>, ids: number[][], mask: number[][], embedDtype: 'float32' | 'bfloat16' = 'float32',
  /** Replaces the MLP of layer l (the MoE references): y is the post-attention norm's output. */
  mlp?: (y: Float64Array, layer: number) => Float64Array,
): Float64Array {
  const type = config.model_type ?? 'llama';
  const gemma = type.startsWith('gemma');
  const sandwich = type === 'gemma2' || type === 'gemma3_text';
  const qkNorm = type === 'qwen3' || type === 'gemma3_text';
  const fused = type === 'phi3';
  const hd = config.hidden_size;
  const H = config.num_attention_heads;
  const KV = config.num_key_value_heads ?? H;
  const D = config.head_dim ?? hd / H;
  const V = config.vocab_size;
  const im = config.intermediate_size;
  const eps = config.rms_norm_eps ?? 1e-6;
  const theta = config.rope_theta ?? 10000;
  const rotDim = Math.floor(D * (config.partial_rotary_factor ?? 1));
  const scale = sandwich ? (config.query_pre_attn_scalar as number) ** -0.5 : 1 / Math.sqrt(D);
  const cap = (x: number, c: number | null | undefined) => (c ? Math.tanh(x / c) * c : x);
  const get = (n: string): Float32Array => (W.get(n) as LlamaTensor).data;
  const has = (n: string): boolean => W.has(n);
  /** y = W[rows from..from+out) x + b for W [*, in]. */
  const lin = (x: Float64Array, name: string, out: number, from = 0): Float64Array => {
    const w = get(`${name}.weight`);
    const inp = x.length;
    const y = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      let s = has(`${name}.bias`) ? get(`${name}.bias`)[from + o] : 0;
      for (let i = 0; i < inp; i++) s += w[(from + o) * inp + i] * x[i];
      y[o] = s;
    }
    return y;
  };
  const rms = (x: Float64Array, name: string): Float64Array => {
    let ms = 0;
    for (const v of x) ms += v * v;
    const r = 1 / Math.sqrt(ms / x.length + eps);
    const w = get(name);
    return x.map((v, i) => (gemma ? 1 + w[i] : w[i]) * v * r);
  };
  const perHead = (x: Float64Array, heads: number, name: string): Float64Array => {
    const y = new Float64Array(x.length);
    for (let h = 0; h < heads; h++) y.set(rms(x.subarray(h * D, (h + 1) * D), name), h * D);
    return y;
  };
  const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  const act = (x: number) => (gemma ? gelu(x) : x / (1 + Math.exp(-x)));
  const B = ids.length;
  const S = ids[0].length;
  const positions = mask.map((row) => { let cum = 0; return row.map((m) => { cum += m; return Math.max(cum - 1, 0); }); });
  const L = Math.max(...positions.flat()) + 1;
  const globalRope = referenceRope(config, rotDim, theta, L);
  const localRope = type === 'gemma3_text' ? referenceRope(config, rotDim, config.rope_local_base_freq ?? 10000, L, false) : globalRope;
  const rope = (x: Float64Array, heads: number, pos: number, r: { inv: number[]; attention: number }): Float64Array => {
    const y = Float64Array.from(x);
    const half = rotDim / 2;
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < rotDim; i++) {
        const a = pos * r.inv[i % half];
        const rot = i < half ? -x[h * D + i + half] : x[h * D + i - half];
        y[h * D + i] = (x[h * D + i] * Math.cos(a) + rot * Math.sin(a)) * r.attention;
      }
    }
    return y;
  };
  const out = new Float64Array(B * S * V).fill(NaN);
  for (let b = 0; b < B; b++) {
    const pos = positions[b];
    const embScale = !gemma ? 1 : embedDtype === 'bfloat16' ? bf16(Math.sqrt(hd)) : Math.sqrt(hd);
    let x: Float64Array[] = ids[b].map((t) => Float64Array.from(get('model.embed_tokens.weight').subarray(t * hd, (t + 1) * hd), (v) => v * embScale));
    for (let l = 0; l < config.num_hidden_layers; l++) {
      const p = `model.layers.${l}`;
      const a = `${p}.self_attn`;
      const window = slides(config, l) ? (config.sliding_window as number) : Infinity;
      const r = window < Infinity ? localRope : globalRope;
      const h = x.map((v) => rms(v, `${p}.input_layernorm.weight`));
      const proj = (v: Float64Array, which: 'q' | 'k' | 'v'): Float64Array => {
        const n = which === 'q' ? H * D : KV * D;
        if (fused) return lin(v, `${a}.qkv_proj`, n, which === 'q' ? 0 : which === 'k' ? H * D : (H + KV) * D);
        return lin(v, `${a}.${which}_proj`, n);
      };
      const normed = (v: Float64Array, heads: number, n: string) => (qkNorm ? perHead(v, heads, `${a}.${n}.weight`) : v);
      const q = h.map((v, s) => rope(normed(proj(v, 'q'), H, 'q_norm'), H, pos[s], r));
      const k = h.map((v, s) => rope(normed(proj(v, 'k'), KV, 'k_norm'), KV, pos[s], r));
      const vv = h.map((v) => proj(v, 'v'));
      x = x.map((res, i) => {
        const ctx = new Float64Array(H * D);
        for (let head = 0; head < H; head++) {
          const g = Math.floor(head / (H / KV));
          const keys = Array.from({ length: i + 1 }, (_, j) => j).filter((j) => mask[b][j] === 1 && i - j < window);
          const sc = keys.map((j) => {
            let s = 0;
            for (let d = 0; d < D; d++) s += q[i][head * D + d] * k[j][g * D + d];
            return cap(s * scale, config.attn_logit_softcapping);
          });
          const m = Math.max(...sc);
          const ex = sc.map((s) => Math.exp(s - m));
          const z = ex.reduce((a2, c2) => a2 + c2, 0);
          keys.forEach((j, n) => { for (let d = 0; d < D; d++) ctx[head * D + d] += (ex[n] / z) * vv[j][g * D + d]; });
        }
        let o = lin(ctx, `${a}.o_proj`, hd);
        if (sandwich) o = rms(o, `${p}.post_attention_layernorm.weight`);
        return res.map((rv, c) => rv + o[c]);
      });
      x = x.map((res) => {
        const y = rms(res, `${p}.${sandwich ? 'pre_feedforward_layernorm' : 'post_attention_layernorm'}.weight`);
        if (mlp) {
          const m = mlp(y, l);
          return res.map((rv, c) => rv + m[c]);
        }
        const gate = fused ? lin(y, `${p}.mlp.gate_up_proj`, im) : lin(y, `${p}.mlp.gate_proj`, im);
        const up = fused ? lin(y, `${p}.mlp.gate_up_proj`, im, im) : lin(y, `${p}.mlp.up_proj`, im);
        let down = lin(gate.map((gv, c) => act(gv) * up[c]), `${p}.mlp.down_proj`, hd);
        if (sandwich) down = rms(down, `${p}.post_feedforward_layernorm.weight`);
        return res.map((rv, c) => rv + down[c]);
      });
    }
    const tied = config.tie_word_embeddings ?? gemma;
    const w = get(`${tied ? 'model.embed_tokens' : 'lm_head'}.weight`);
    for (let s = 0; s < S; s++) {
      if (!mask[b][s]) continue;
      const y = rms(x[s], 'model.norm.weight');
      for (let v = 0; v < V; v++) {
        let acc = 0;
        for (let c = 0; c < hd; c++) acc += w[v * hd + c] * y[c];
        out[(b * S + s) * V + v] = cap(acc, config.final_logit_softcapping);
      }
    }
  }
  return out;
}
