import * as path from 'node:path';
import { resolveConfig } from './src/protocol/config';
import { runPrune } from './src/backend/pipeline/run';
import { rowPool } from './src/backend/methods/rowKernels';
const text = path.resolve('../shared/fixtures/data/tinystories_valid_head.txt');
(async () => {
  const dir = '/tmp/fp16probe-kT8hFh';
  for (const ck of [path.join(dir, 'm'), path.resolve('../shared/fixtures/stories260K-onnx')]) {
  const config = resolveConfig({ checkpoint: ck, output: ck + '-out-' + Date.now(), method: 'sparsegpt', sparsity: 0.5,
    calibration: { path: text, nsamples: 16, seqlen: 128, seed: 0, skipTokens: 65536 }, evaluation: { path: text, seqlen: 128, maxWindows: 16 } }, dir);
  try {
    const t = Date.now();
    const done = await runPrune(config, { emit: (e) => { if (e.type === 'run.started') console.log(e.model); if (e.type === 'evaluation.finished') console.log(e.model, e.perplexity); if (e.type==='warning.raised') console.log(e); } });
    console.log(done.totals, Date.now() - t);
  } catch (e) { console.log('ERR', e); }
  }
  await rowPool.close();
})();
