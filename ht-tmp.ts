import { halfTrace } from './src/backend/methods';
import { Kernels, mat } from './src/backend/linalg/kernels';
import { Engine } from './src/backend/onnx/session';
import * as ort from 'onnxruntime-node';
async function main() {
  const rows = +process.argv[2], cols = +process.argv[3];
  const X = new Float32Array(rows * cols); for (let i = 0; i < X.length; i++) X[i] = Math.sin(i * 0.37);
  const H = new Float32Array(cols * cols); for (let i = 0; i < cols; i++) for (let j = 0; j <= i; j++) { const v = Math.cos((i * 7 + j * 13) * 0.01) * 0.01 + (i === j ? 1 : 0); H[i * cols + j] = v; H[j * cols + i] = v; }
  const engine = new Engine({ device: 'cpu', threads: 0 });
  const k = new Kernels(engine);
  const rowsOf = (r0: number, r1: number) => X.subarray(r0 * cols, r1 * cols);
  if (process.argv[4] === 'exact') {
    let s = 0; const hx = new Float64Array(cols);
    for (let r = 0; r < rows; r++) { const x = X.subarray(r * cols, (r + 1) * cols); for (let i = 0; i < cols; i++) { let a = 0; const hi = i * cols; for (let j = 0; j < cols; j++) a += H[hi + j] * x[j]; s += x[i] * a; } }
    console.log('float64', 0.5 * s);
  }
  const b0 = await halfTrace(rows, cols, new ort.Tensor('float32', H, [cols, cols]), k, rowsOf);
  let t = performance.now(); const b = await halfTrace(rows, cols, new ort.Tensor('float32', H, [cols, cols]), k, rowsOf); const tb = performance.now() - t;
  console.log(`full ${(tb / 1000).toFixed(2)} s ${b} ${b0}`);
  for (const block of [256, 512, 1024]) for (const divisor of [4, 8, 16]) {
    t = performance.now(); const a = await halfTrace(rows, cols, mat(cols, cols, H), k, rowsOf, { block, divisor }); const ta = performance.now() - t;
    console.log(`symmetric block ${block} divisor ${divisor}: ${(ta / 1000).toFixed(2)} s  ${a}`);
  }
  await engine.release();
}
main();
