// SparseGPT's per-row column loop on one thread: the JavaScript kernel (sparsegptSweepRows) against the
// WebAssembly SIMD one (sparsegptSweepRowsWasm), in CPU time (process.cpuUsage: unaffected by other load on
// a shared machine, as long as this thread is the only busy one). Checks the two agree bit for bit.
// --variants: the kernel's `fuse`x`unroll` (wasm/sparsegptSweep.ts sparsegptSweepModule) to compare. Prints
// docs/BENCHMARKS.md's section in markdown:
//   node --import tsx bench/sparsegptKernel.ts [--rows 4096] [--block 128] [--sparsity 0.5] [--nm 2:4] [--repeat 5] [--variants 4x1,2x1]

import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { sparsegptSweepRows, sparsegptSweepRowsWasm } from '../src/backend/methods/rowKernels';
import { sparsegptSweepModule } from '../src/backend/wasm/sparsegptSweep';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '4096' },
    block: { type: 'string', default: '128' },
    sparsity: { type: 'string', default: '0.5' },
    nm: { type: 'string' },
    repeat: { type: 'string', default: '5' },
    variants: { type: 'string', default: '4x1' },
  },
});
const rows = Number(values.rows);
const B = Number(values.block);
const sparsity = Number(values.sparsity);
const [n, m] = values.nm ? values.nm.split(':').map(Number) : [0, 0];
const repeat = Number(values.repeat);

// A deterministic block: G upper with a dominant positive diagonal, w ~ U(−1, 1), a random mask.
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
const G = new Float64Array(B * B);
for (let i = 0; i < B; i++) {
  G[i * B + i] = 1 + rand();
  for (let j = i + 1; j < B; j++) G[i * B + j] = (rand() - 0.5) * 0.2;
}
const w = Float64Array.from({ length: rows * B }, () => 2 * rand() - 1);
const mask0 = Uint8Array.from({ length: rows * B }, () => (rand() < sparsity ? 1 : 0));

const cpuMs = (run: () => void): number => {
  const t = process.cpuUsage();
  run();
  const d = process.cpuUsage(t);
  return (d.user + d.system) / 1000;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const variants = values.variants.split(',');
const args = () => ({ B, w, G, mask: Uint8Array.from(mask0), E: new Float64Array(rows * B), n, m, groupsEnd: m ? B : 0 });
const js = args();
const jsTimes = Array.from({ length: repeat }, () => cpuMs(() => sparsegptSweepRows(0, rows, js)));
const label = m ? `${n}:${m}` : `${sparsity * 100}% unstructured`;
const lines = [
  '## SparseGPT column loop (`bench/sparsegptKernel.ts`)', '',
  `Command: \`node --import tsx bench/sparsegptKernel.ts${process.argv.length > 2 ? ' ' + process.argv.slice(2).join(' ') : ''}\``, '',
  `- ${new Date().toISOString()}, Node ${process.version}, ${cpus()[0]?.model.trim() ?? '?'}; ${rows} rows × B = ${B}, ${label}, one thread, CPU ms (process.cpuUsage), median of ${repeat} (min); load average ${loadavg()[0].toFixed(1)}`, '',
  '| kernel | CPU ms | × JS | same E and mask as JS |', '| --- | ---: | ---: | --- |',
  `| JavaScript | ${median(jsTimes).toFixed(1)} (${Math.min(...jsTimes).toFixed(1)}) | 1 | — |`,
];
for (const variant of variants) {
  const wasm = sparsegptSweepModule(...variant.split('x').map(Number));
  delete (globalThis as { prunekitSparsegptSweep?: unknown }).prunekitSparsegptSweep; // compile this variant
  const a = args();
  const times = Array.from({ length: repeat }, () => cpuMs(() => sparsegptSweepRowsWasm(0, rows, { ...a, wasm })));
  const same = a.E.every((v, i) => Object.is(v, js.E[i])) && a.mask.every((v, i) => v === js.mask[i]);
  lines.push(`| WebAssembly SIMD, fuse×unroll ${variant} | ${median(times).toFixed(1)} (${Math.min(...times).toFixed(1)}) | ${(median(jsTimes) / median(times)).toFixed(2)} | ${same ? 'bit for bit' : 'NO'} |`);
}
console.log(lines.join('\n'));
