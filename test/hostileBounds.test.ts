// Issue 12, classes 2 and 3: memory and CPU bombs in a model folder (config.json numbers that disagree with the
// stored tensors, model_type naming object built-ins) and in a prune config (catastrophic or unsupported
// patterns, huge strings, keys, nesting and files, N:M enumerations, run sizes past memory). Every input is built
// here from the fixtures and run through the CLI from sources; each must fail with its exit code and run.failed
// code, a message naming the problem, in under 10 s (CPU time; wall time scaled by the machine's load, see
// loadScaled) and 1 GB of peak RSS, with no input byte changed and nothing left at or beside --out.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { LlamaConfig, randomLlamaWeights } from '../src/backend/models/llama';
import { writeHfFolder } from './helpers/hfFolder';
import { editedHfCopy, hashInputs, leftoversOf, loadScaled, runHostile } from './helpers/hostileRun';
import { fixturesDir } from './helpers/realLayers';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'prunekit-hostile-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const ONNX = path.join(fixturesDir, 'stories260K-onnx');
const TEXT = path.join(fixturesDir, 'data', 'tinystories_valid_head.txt');
const MAX_SECONDS = 10;
const MAX_RSS = 1 << 30;

let serial = 0;

/** A copy of an HF fixture folder with config.json changed by `edit`. */
function hfCopy(fixture: string, edit: (config: Record<string, unknown>) => Record<string, unknown> | string): string {
  return editedHfCopy(path.join(fixturesDir, fixture), path.join(tmp, `model-${serial++}`), edit);
}

/** A Llama-variant folder with random weights as `config` implies, and config.json as `edit` makes it. */
function variantFolder(config: LlamaConfig & Record<string, unknown>, edit: Partial<LlamaConfig> & Record<string, unknown>): string {
  const dir = path.join(tmp, `model-${serial++}`);
  const tensors = [...randomLlamaWeights(config, 1)].map(([name, t]) => ({ name, dims: t.dims, data: t.data }));
  writeHfFolder(dir, { ...config, ...edit }, tensors, { copy: ['tokenizer.json', 'tokenizer_config.json'].map((f) => path.join(fixturesDir, 'stories260K-hf', f)) });
  return dir;
}

/** The folder with its model.safetensors header's first dtype renamed (the header length rewritten to fit). */
function withHeaderDtype(dir: string, dtype: string): string {
  const file = path.join(dir, 'model.safetensors');
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = bytes.subarray(8, 8 + n).toString('utf8').replace(/"dtype":\s*"F32"/, `"dtype":"${dtype}"`);
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
  rmSync(file);
  writeFileSync(file, Buffer.concat([size, Buffer.from(header), bytes.subarray(8 + n)]));
  return dir;
}

/** A *.prune.json holding `text` (or the JSON of an object) on the ONNX fixture. */
function configFile(content: string | Record<string, unknown>): string {
  const file = path.join(tmp, `case-${serial++}.prune.json`);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify({ checkpoint: ONNX, calibration: { path: TEXT, nsamples: 4, seqlen: 32 }, ...content }));
  return file;
}

interface Case {
  name: string;
  /** CLI arguments after `--out` is added; inputs: the files and folders whose bytes must not change. */
  args: string[];
  inputs: string[];
  code: string;
  message: RegExp;
  status?: number;
}

function check(c: Case): void {
  const out = path.join(tmp, `out-${serial++}`);
  const before = hashInputs(c.inputs);
  const r = runHostile([...c.args, '--out', out], tmp);
  assert.equal(r.status, c.status ?? 1, `exit status (stderr: ${r.stderr.slice(-500)})`);
  assert.ok(r.failed, `no run.failed event (stderr: ${r.stderr.slice(-500)})`);
  assert.equal(r.failed.code, c.code, r.failed.message);
  assert.match(r.failed.message, c.message);
  assert.ok(!r.failed.message.includes('\n    at '), `a stack in the message: ${r.failed.message}`);
  assert.ok(r.cpuSeconds < MAX_SECONDS, `used ${r.cpuSeconds.toFixed(1)} s of CPU`);
  assert.ok(r.seconds < loadScaled(MAX_SECONDS), `took ${r.seconds.toFixed(1)} s (load average ${os.loadavg()[0].toFixed(1)})`);
  assert.ok(r.maxRss < MAX_RSS, `peak RSS ${(r.maxRss / 2 ** 20).toFixed(0)} MiB`);
  assert.deepEqual(hashInputs(c.inputs), before, 'an input changed');
  assert.deepEqual(leftoversOf(out), [], 'something was left at or beside --out');
}

const prune = (model: string, ...more: string[]) => ['prune', model, '--method', 'magnitude', ...more];
const inspect = (model: string) => ['inspect', model];
const configCase = (name: string, content: string | Record<string, unknown>, code: string, message: RegExp): Case => {
  const file = configFile(content);
  return { name, args: ['prune', '--config', file], inputs: [file, ONNX], code, message };
};

// ---------------------------------------------------------------------------------------------------------
// Class 2: a model folder's config.json

describe('bombs in a model folder fail fast against the stored tensor shapes', () => {
  const big = (field: string, value: unknown, fixture = 'stories260K-hf') => hfCopy(fixture, (c) => ({ ...c, [field]: value }));
  const cases: Case[] = [];
  const add = (name: string, model: string, args: string[], message: RegExp, code = 'checkpoint-invalid') => cases.push({ name, args, inputs: [model], code, message });
  let m: string;
  m = big('num_hidden_layers', 1e6);
  add('prune: num_hidden_layers 10⁶', m, prune(m), /config\.json: num_hidden_layers \(= 1000000\) needs tensor 'model\.layers\.5\.input_layernorm\.weight', which the checkpoint does not store/);
  m = big('num_hidden_layers', 1e9);
  add('inspect: num_hidden_layers 10⁹', m, inspect(m), /num_hidden_layers \(= 1000000000\) needs tensor 'model\.layers\.5\./);
  m = big('head_dim', 2e9);
  add('prune: head_dim 2·10⁹', m, prune(m), /num_attention_heads · head_dim \(num_attention_heads = 8, head_dim = 2000000000\) gives 16000000000 for dim 0 of 'model\.layers\.0\.self_attn\.q_proj\.weight', but .*model\.safetensors stores it as \[64, 64\]/);
  m = big('head_dim', 2e9);
  add('inspect: head_dim 2·10⁹', m, inspect(m), /head_dim = 2000000000\) gives 16000000000/);
  m = big('hidden_size', 999_999_999);
  add('inspect: hidden_size 10⁹', m, inspect(m), /hidden_size \(= 999999999\) gives 999999999 for dim 1 of 'model\.embed_tokens\.weight'.*stores it as \[512, 64\]/);
  m = big('vocab_size', 1e15);
  add('prune: vocab_size 10¹⁵', m, prune(m), /vocab_size \(= 1000000000000000\) gives 1000000000000000 for dim 0 of 'model\.embed_tokens\.weight'/);
  m = big('intermediate_size', 1e9);
  add('prune: intermediate_size 10⁹', m, prune(m), /intermediate_size \(= 1000000000\) gives 1000000000 for dim 0 of 'model\.layers\.0\.mlp\.gate_proj\.weight'/);
  m = big('num_attention_heads', 1e9);
  add('inspect: num_attention_heads 10⁹', m, inspect(m), /num_attention_heads · head_dim \(num_attention_heads = 1000000000, head_dim = 8\) gives 8000000000/);
  m = big('tie_word_embeddings', false);
  add('prune: an untied LM head the checkpoint does not store', m, prune(m), /tie_word_embeddings \(= false\) needs tensor 'lm_head\.weight', which the checkpoint does not store/);
  m = big('attention_bias', true);
  add('inspect: attention biases the checkpoint does not store', m, inspect(m), /attention_bias \(= true\) needs tensor 'model\.layers\.0\.self_attn\.q_proj\.bias'/);
  m = big('model_type', '__proto__');
  add('prune: model_type "__proto__"', m, prune(m), /config\.json: model_type '__proto__' is not supported; supported model types: llama/);
  m = big('model_type', 'constructor');
  add('inspect: model_type "constructor"', m, inspect(m), /model_type 'constructor' is not supported/);
  m = big('model_type', 'hasOwnProperty');
  add('inspect: model_type "hasOwnProperty"', m, inspect(m), /model_type 'hasOwnProperty' is not supported/);
  m = big('num_hidden_layers', 1e9, 'stories-mamba-hf');
  add('inspect: Mamba num_hidden_layers 10⁹', m, inspect(m), /num_hidden_layers \(= 1000000000\) needs tensor 'backbone\.layers\.\d+\.norm\.weight'/);
  m = big('state_size', 1e9, 'stories-mamba-hf');
  add('prune: Mamba state_size 10⁹', m, prune(m), /time_step_rank \+ 2 · state_size \(.*state_size = 1000000000\) gives \d+ for dim 0 of 'backbone\.layers\.0\.mixer\.x_proj\.weight'/);
  // The Llama variants' own tensors (llamaConfig.ts): q_norm/k_norm over head_dim, Gemma 2's feed-forward norms,
  // Phi-3's fused projections. Sizes as in test/llamaFamilies.test.ts; q and kv widths kept where head_dim changes.
  const small = { hidden_size: 32, intermediate_size: 48, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, num_hidden_layers: 2, vocab_size: 512 };
  m = variantFolder({ ...small, model_type: 'qwen3' }, { head_dim: 32, num_attention_heads: 2, num_key_value_heads: 1 });
  add('prune: Qwen3 head_dim against q_norm', m, prune(m), /head_dim \(= 32\) gives 32 for dim 0 of 'model\.layers\.0\.self_attn\.q_norm\.weight', but .*model\.safetensors stores it as \[16\]/);
  m = variantFolder({ ...small, model_type: 'gemma3_text', sliding_window: 4 }, { num_hidden_layers: 1e9 });
  add('inspect: Gemma 3 num_hidden_layers 10⁹ (per-layer windows)', m, inspect(m), /num_hidden_layers \(= 1000000000\) needs tensor 'model\.layers\.2\.input_layernorm\.weight'/);
  m = variantFolder({ ...small, model_type: 'gemma' }, { model_type: 'gemma2' });
  add('inspect: a Gemma checkpoint called gemma2', m, inspect(m), /model_type \(= "gemma2"\) needs tensor 'model\.layers\.0\.pre_feedforward_layernorm\.weight', which the checkpoint does not store/);
  m = variantFolder({ ...small, model_type: 'phi3' }, { intermediate_size: 1e9 });
  add('prune: Phi-3 intermediate_size 10⁹ (fused gate_up_proj)', m, prune(m), /2 · intermediate_size \(intermediate_size = 1000000000\) gives 2000000000 for dim 0 of 'model\.layers\.0\.mlp\.gate_up_proj\.weight'/);
  m = variantFolder({ ...small, model_type: 'phi3' }, { head_dim: 2e9 });
  add('inspect: Phi-3 head_dim 2·10⁹ (fused qkv_proj)', m, inspect(m), /num_attention_heads · head_dim \+ 2 · num_key_value_heads · head_dim \(num_attention_heads = 4, head_dim = 2000000000, num_key_value_heads = 2\) gives 16000000000 for dim 0 of 'model\.layers\.0\.self_attn\.qkv_proj\.weight'/);
  m = withHeaderDtype(hfCopy('stories260K-hf', (c) => c), 'constructor');
  add('inspect: a safetensors dtype "constructor"', m, inspect(m), /model\.safetensors.*unknown dtype "constructor" \(known: /);
  m = hfCopy('stories260K-hf', (c) => JSON.stringify(c) + ' '.repeat(17 << 20));
  add('inspect: a 17 MB config.json', m, inspect(m), /config\.json is \d+ bytes; the model config may be at most 16777216 bytes/);

  for (const c of cases) test(c.name, () => check(c));
});

// ---------------------------------------------------------------------------------------------------------
// Class 3: a prune config

describe('bombs in a prune config are refused by a bound, naming the JSON path', () => {
  const long = (n: number) => 'x'.repeat(n);
  let nested = '0';
  for (let i = 0; i < 5000; i++) nested = `[${nested}]`;
  const cases: Case[] = [
    configCase('a catastrophic re: pattern runs in linear time (and matches nothing)', { layers: { include: [`re:^(.*)*x$`] } }, 'layers-unmatched', /\$\.layers\.include\[0\]: "re:\^\(\.\*\)\*x\$" matches no prunable layer/),
    configCase('a catastrophic glob runs in linear time', { layers: { exclude: [`${'*a'.repeat(40)}*b`] } }, 'layers-unmatched', /\$\.layers\.exclude\[0\]: ".*" matches no prunable layer/),
    configCase('lookahead in re: is refused (RE2)', { layers: { include: ['re:(?=.*q_proj)'] } }, 'config-invalid', /\$\.layers\.include\[0\]: not a valid regular expression: .*\(\?=.*RE2 syntax: no lookaround, no backreferences/),
    configCase('a backreference in an override is refused (RE2)', { layers: { overrides: [{ match: 're:(q)\\1', sparsity: 0.6 }] } }, 'config-invalid', /\$\.layers\.overrides\[0\]\.match: not a valid regular expression: invalid escape sequence/),
    configCase('lookbehind in blockPattern is refused (RE2)', { blockPattern: '(?<=layers\\.)(\\d+)' }, 'config-invalid', /\$\.blockPattern: not a valid regular expression/),
    configCase('a nested repeat bomb in blockPattern is refused', { blockPattern: '((a{100}){100}){100}(\\d+)' }, 'config-invalid', /\$\.blockPattern: not a valid regular expression: invalid repeat count/),
    configCase('a 2000-character pattern', { layers: { include: [`*${long(2000)}`] } }, 'limit-exceeded', /\$\.layers\.include\[0\]: is 2001 characters long; the limit is 1024/),
    configCase('a 2000-character blockPattern', { blockPattern: `(\\d+)${long(2000)}` }, 'limit-exceeded', /\$\.blockPattern: is 2005 characters long; the limit is 1024/),
    configCase('a 500 000-character checkpoint path', { checkpoint: `/${long(500_000)}` }, 'limit-exceeded', /\$\.checkpoint: is 500001 characters long; the limit is 4096/),
    configCase('a 500 000-character string value', { method: long(500_000) }, 'limit-exceeded', /\$\.method: is 500000 characters long; the limit is 4096/),
    configCase('a 500 000-character key', { [long(500_000)]: 1 }, 'limit-exceeded', /\$\["x+…"\]: a key 500000 characters long; the limit is 4096/),
    configCase('a 4000-character unknown key gets no unbounded "did you mean"', { [long(4000)]: 1 }, 'config-invalid', /\$\.x+: unknown property \(known: /),
    configCase('a 4000-character method gets no unbounded "did you mean"', { method: `apt${long(3990)}` }, 'config-invalid', /\$\.method: must be one of "apt", "sparsegpt", "wanda", "magnitude" \(got "aptx+\.\.\.\)/),
    configCase('an unknown key one edit away still gets "did you mean"', { methd: 'apt' }, 'config-invalid', /\$\.methd: unknown property; did you mean "method"\?/),
    configCase('nesting 40 levels deep', `{"checkpoint": "${ONNX}", "x": ${'['.repeat(40)}${']'.repeat(40)}}`, 'limit-exceeded', /\$\.x(\[0\])+: nests deeper than 32 levels/),
    configCase('nesting 5000 levels deep is refused before parsing', `{"checkpoint": "${ONNX}", "x": ${nested}}`, 'limit-exceeded', /\$: nests deeper than 64 levels; a prune config has at most 32/),
    configCase('20 000 items in an array', { x: Array.from({ length: 20_000 }, () => 0) }, 'limit-exceeded', /\$\.x: has 20000 items; the limit is 10000/),
    configCase('300 patterns in layers.exclude', { layers: { exclude: Array.from({ length: 300 }, (_, i) => `x${i}`) } }, 'limit-exceeded', /\$\.layers\.exclude: has 300 items; the limit is 256/),
    configCase('a 2 MB config file is refused before parsing', `{"checkpoint": "${ONNX}", "x": "${long(2 << 20)}"}`, 'limit-exceeded', /: the file is \d+ bytes; a prune config may be at most 1048576 bytes/),
    configCase('APT joint N:M 8:16 in an override', { method: 'apt', layers: { overrides: [{ match: '*', pattern: '8:16' }] } }, 'config-invalid', /\$\.layers\.overrides\[0\]\.pattern: "8:16": APT's joint N:M mask would try C\(16, 8\) subsets per group, more than the limit of 1024; set "nmMask": "saliency"/),
  ];
  const cli = (name: string, flags: string[], code: string, message: RegExp): Case => ({ name, args: ['prune', ONNX, '--calibration', TEXT, ...flags], inputs: [ONNX, TEXT], code, message });
  cases.push(
    cli('APT joint N:M 16:32 (6·10⁸ subsets)', ['--method', 'apt', '--pattern', '16:32'], 'config-invalid', /\$\.pattern: "16:32": APT's joint N:M mask would try C\(32, 16\) subsets per group, more than the limit of 1024/),
    cli('N:M 1:100000', ['--method', 'sparsegpt', '--pattern', '1:100000'], 'config-invalid', /\$\.pattern: "1:100000": M may be at most 256/),
    cli('--nsamples 1e8', ['--nsamples', '1e8'], 'config-invalid', /\$\.calibration\.nsamples: must be an integer in \[1, 1048576\] \(got 100000000\)/),
    cli('--seqlen 1e9', ['--seqlen', '1e9'], 'config-invalid', /\$\.calibration\.seqlen: must be an integer in \[1, 1048576\] or null \(got 1000000000\)/),
    cli('--max-windows 1e12', ['--eval', TEXT, '--max-windows', '1e12'], 'config-invalid', /\$\.evaluation\.maxWindows: must be an integer in \[1, 1048576\] or null/),
    cli('a run past memory: 10⁶ windows of 10⁶ tokens', ['--method', 'sparsegpt', '--nsamples', '1000000', '--seqlen', '1000000'], 'out-of-memory',
      /^the run needs about \d+\.\d GiB \(calibration activations \d+\.\d GiB, Hessians \d\.\d+ GiB, largest layer \d\.\d+ GiB, one batch \d+\.\d GiB\) but (free memory|the cgroup memory limit) is \d+\.\d+ GiB; lower calibration\.nsamples or seqlen/),
  );
  for (const c of cases) test(c.name, () => check(c));
});
