// Dense perplexity of the fixture models with the reference protocol (fixtures README): ids = [BOS] +
// encode(whole file), first 65,536 ids, non-overlapping windows, every next token scored.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { evaluationWindows, loadTokenizer, readTokens } from '../src/backend/data/tokens';
import { perplexity, windowNll } from '../src/backend/eval/perplexity';
import { inputSpecs } from '../src/backend/models/inputs';
import { decodeModel } from '../src/backend/onnx/proto';

const fixtures = path.resolve(__dirname, '..', '..', 'shared', 'fixtures');
const evalText = path.join(fixtures, 'data', 'tinystories_valid_head.txt');

describe('tokens', () => {
  test('[BOS] + encode(whole file) reproduces the reference evaluation ids', () => {
    const tok = loadTokenizer(path.join(fixtures, 'stories260K-onnx', 'tokenizer.json'));
    assert.equal(tok.bosId, 1);
    const ids = readTokens(evalText, tok);
    const ref = JSON.parse(readFileSync(path.join(fixtures, 'stories260K-eval-ids.json'), 'utf8')) as number[] | { ids: number[] };
    const refIds = Array.isArray(ref) ? ref : ref.ids;
    assert.equal(refIds.length, 65536);
    assert.deepEqual(Array.from(ids.subarray(0, 65536)), refIds);
  });

  test('windowNll equals a direct float64 log-softmax', () => {
    const vocab = 5;
    const logits = Float32Array.from([1, 2, 3, 4, 5, 0.5, -1, 2, 0, 1, 3, 3, 3, 3, 3]);
    const ids = Int32Array.from([0, 4, 2]);
    let want = 0;
    for (let t = 0; t < 2; t++) {
      const row = Array.from(logits.subarray(t * vocab, (t + 1) * vocab));
      const lse = Math.log(row.reduce((s, x) => s + Math.exp(x), 0));
      want += lse - row[ids[t + 1]];
    }
    assert.ok(Math.abs(windowNll(logits, 0, ids, vocab) - want) < 1e-12);
  });
});

for (const [model, seqlen, refPpl] of [
  ['stories260K-onnx', 256, 4.0971],
  ['stories260K-onnx', 512, 4.0044],
  ['stories-llama-1M-onnx', 256, 5.0497],
] as const) {
  test(`${model}: dense perplexity at seqlen ${seqlen} matches the reference ${refPpl} to 1e-3`, async () => {
    const dir = path.join(fixtures, model);
    const file = path.join(dir, 'model.onnx');
    const tok = loadTokenizer(path.join(dir, 'tokenizer.json'));
    const ids = readTokens(evalText, tok).subarray(0, 65536);
    const m = decodeModel(readFileSync(file));
    const specs = inputSpecs(m.graph.input, new Set(m.graph.initializer.map((t) => t.name)));
    const session = await ort.InferenceSession.create(file);
    const res = await perplexity(session, specs, evaluationWindows(ids, seqlen), { batch: 8 });
    await session.release();
    assert.equal(res.windows, Math.floor(65536 / seqlen));
    assert.equal(res.predictedTokens, res.windows * (seqlen - 1));
    assert.ok(Math.abs(res.ppl / refPpl - 1) < 1e-3, `ppl ${res.ppl} vs reference ${refPpl}`);
  });
}
