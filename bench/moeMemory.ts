// MoE calibration memory (docs/BENCHMARKS.md, "MoE calibration memory"), printed as that section's table:
//   node --import tsx bench/moeMemory.ts mixtral 2        (Mixtral-8x7B's block shape with 2 of its 8 experts)
//   node --import tsx bench/moeMemory.ts qwen2_moe 60     (Qwen1.5-MoE-A2.7B's block shape, all 60 experts)
// One block of that shape with random weights, calibrated on 2 windows of 16 tokens as run.ts does it: the block's
// calibration graph run, its sums accumulated (CalibrationSums) and kept until the pass's layers would be pruned.
// Each mode runs in a child process of its own and reports that process's peak RSS, and the peak RSS before the
// calibration (model built, weights in memory): `one pass` (every Hessian of the block at once, as before
// calibrationGroups) and `passes` (calibrationGroups, as runs do now).
import { spawnSync } from 'node:child_process';
import * as ort from 'onnxruntime-node';
import { buildMoeModel, MoeConfig, moeTensorShapes } from '../src/backend/models/moe';
import type { LlamaTensor } from '../src/backend/models/weights';
import { Engine } from '../src/backend/onnx/session';
import { discoverLayers, PrunableLayer } from '../src/backend/pipeline/layers';
import { calibrationBytes, calibrationGroups, calibrationModel, emptySums, planSegments, runCalibration, Segment, SegmentPlan, segmentModel } from '../src/backend/pipeline/segments';
import { mulberry32 } from '../src/backend/random';

const MODES = ['one pass', 'passes'] as const;
type Mode = (typeof MODES)[number];
type Family = 'mixtral' | 'qwen2_moe';
interface Row { mode: Mode; passes: number; largestPassBytes: number; rssBeforeBytes: number; peakRssBytes: number; seconds: number }
const maxRss = () => process.resourceUsage().maxRSS * 1024;

/** The block shapes of mistralai/Mixtral-8x7B-v0.1 and Qwen/Qwen1.5-MoE-A2.7B (config.json), with `experts` experts,
 *  one layer and a toy vocabulary (the embedding is not the point). */
function config(family: Family, experts: number): MoeConfig & Record<string, unknown> {
  const common = { num_hidden_layers: 1, vocab_size: 256, max_position_embeddings: 64, tie_word_embeddings: false, hidden_act: 'silu', sliding_window: null };
  return family === 'mixtral'
    ? { ...common, model_type: family, hidden_size: 4096, intermediate_size: 14336, num_attention_heads: 32, num_key_value_heads: 8, num_local_experts: experts, num_experts_per_tok: 2, rms_norm_eps: 1e-5, rope_theta: 1e6 }
    : { ...common, model_type: family, hidden_size: 2048, intermediate_size: 5632, moe_intermediate_size: 1408, shared_expert_intermediate_size: 5632, num_attention_heads: 16, num_key_value_heads: 16, num_experts: experts, num_experts_per_tok: 4, norm_topk_prob: false, rms_norm_eps: 1e-6, rope_theta: 1e6 };
}

async function measure(mode: Mode, family: Family, experts: number): Promise<Row> {
  const t0 = performance.now();
  const cfg = config(family, experts);
  const shapes = moeTensorShapes(family, cfg);
  const uniform = mulberry32(1);
  const weights = new Map<string, LlamaTensor>([...shapes].map(([name, dims]) => {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    const scale = 2 / Math.sqrt(dims[dims.length - 1]);
    for (let i = 0; i < data.length; i++) data[i] = (uniform() - 0.5) * scale;
    if (dims.length === 1) data.fill(1);
    return [name, { data, dims }];
  }));
  const model = buildMoeModel(family, cfg, weights);
  const plan = await planSegments(model, discoverLayers(model));
  const engine = new Engine({ device: 'cpu', threads: 0 });
  const ids = [Array.from({ length: 16 }, (_, i) => (i * 37) % 256), Array.from({ length: 16 }, (_, i) => (i * 91 + 5) % 256)];
  const int64 = (rows: number[][]) => new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0].length]);
  const feeds: Record<string, ort.Tensor> = { input_ids: int64(ids), attention_mask: int64(ids.map((r) => r.map(() => 1))) };
  const prefix = segmentModel(plan, plan.segments[0]);
  Object.assign(feeds, await (await engine.kernel(prefix.model)).run(Object.fromEntries(prefix.inputs.map((n) => [n, feeds[n]]))));
  const block = plan.segments[1];
  for (const l of block.layers) feeds[l.weight] = new ort.Tensor('float32', (weights.get(l.weight) as LlamaTensor).data as Float32Array<ArrayBuffer>, l.weightDims);
  const groups = mode === 'passes' ? calibrationGroups(block.layers) : [block.layers];
  const rssBeforeBytes = maxRss();
  for (const layers of groups) await calibratePass(engine, plan, block, layers, feeds, ids.length);
  await engine.release();
  return {
    mode, passes: groups.length, largestPassBytes: Math.max(...groups.map(calibrationBytes)), rssBeforeBytes,
    peakRssBytes: maxRss(), seconds: (performance.now() - t0) / 1000,
  };
}

/** One calibration pass as run.ts's calibrate: the sums live until the pass's layers are pruned, then go. */
async function calibratePass(engine: Engine, plan: SegmentPlan, block: Segment, layers: PrunableLayer[], feeds: Record<string, ort.Tensor>, sequences: number): Promise<void> {
  const cg = calibrationModel(plan, block, { layers });
  const kernel = await engine.kernel(cg.model);
  await runCalibration(kernel, cg, Object.fromEntries([...cg.inputs, ...cg.weights].map((n) => [n, feeds[n]])), emptySums(cg), sequences);
  await engine.forget(kernel);
}

const gib = (b: number) => (b / 2 ** 30).toFixed(2);

async function main(): Promise<void> {
  const [family, n, mode] = process.argv.slice(2) as [Family, string, Mode | undefined];
  if (family !== 'mixtral' && family !== 'qwen2_moe') throw new Error('usage: bench/moeMemory.ts mixtral|qwen2_moe <experts>');
  if (mode) {
    console.log(JSON.stringify(await measure(mode, family, Number(n))));
    return;
  }
  const rows: Row[] = MODES.map((m) => {
    const r = spawnSync(process.execPath, [...process.execArgv, __filename, family, n, m], { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (r.status !== 0) throw new Error(`${m}: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop() as string) as Row;
  });
  console.log(`\`node --import tsx bench/moeMemory.ts ${family} ${n}\`\n`);
  console.log(`| ${family}-shaped block, ${n} experts | passes | Hessian sums in the largest pass (GiB) | peak RSS before calibrating (GiB) | peak RSS (GiB) |`);
  console.log('|---|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.mode} | ${r.passes} | ${gib(r.largestPassBytes)} | ${gib(r.rssBeforeBytes)} | ${gib(r.peakRssBytes)} |`);
}

void main();
