// The passes over a pruned layer's weight outside the method's solve (pipeline/run.ts pruneSegmentLayers,
// methods/index.ts pruneLayer), each against the simple loop it replaces, bit for bit, on random data with the
// edge values: ±0, NaN (several payloads), ±inf, subnormals, values that round to zero or overflow in 16 bits.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { float32ToBytes, floatBitsToBf16Bits, floatBitsToHalfBits, halfBytesToFloat32, roundedBytes, roundToType } from '../src/backend/formats/dtype';
import { allFinite, countZeros, METHODS, validate } from '../src/backend/methods';
import { transpose, transposeBits } from '../src/backend/models/emitter';
import { DataType } from '../src/backend/onnx/proto';
import { CalibrationSums } from '../src/backend/pipeline/calibrationSums';

/** A seeded LCG in [0, 1). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

const EDGES = [0, -0, NaN, Infinity, -Infinity, 2, -2, 1e-30, -1e-30, 3e-8, -3e-8, 6e-8, 65520, -70000, 3.4e38, 1.5e-45, -1.5e-45];
const NAN_BITS = [0x7fc00000, 0xffc00001, 0x7f800001, 0x7f802000, 0xff900000];

/** n values: half zero (as pruning leaves them), the rest N(0, scale), the edge values and NaN payloads scattered. */
function weights(n: number, seed: number, edges = true): Float32Array {
  const rnd = lcg(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rnd() < 0.5 ? 0 : (rnd() - 0.5) * 10 ** (rnd() * 8 - 6);
  if (!edges) return a;
  const bits = new Uint32Array(a.buffer);
  for (let k = 0; k < n / 16; k++) {
    const i = Math.floor(rnd() * n);
    if (rnd() < 0.8) a[i] = EDGES[Math.floor(rnd() * EDGES.length)];
    else bits[i] = NAN_BITS[Math.floor(rnd() * NAN_BITS.length)];
  }
  return a;
}

const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

/** roundToType(t, a, { keepNonZero: true }) for a 16-bit t, value by value from the exported bit conversions. */
function simpleRound(t: DataType, a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  const bits = bitsOf(a);
  const outBits = bitsOf(out);
  for (let i = 0; i < a.length; i++) {
    let h = t === DataType.FLOAT16 ? floatBitsToHalfBits(bits[i]) : floatBitsToBf16Bits(bits[i]);
    if ((h & 0x7fff) === 0 && (bits[i] & 0x7fffffff) !== 0) h |= 1;
    outBits[i] = t === DataType.FLOAT16 ? bitsOf(halfBytesToFloat32(Uint8Array.of(h & 0xff, h >>> 8)))[0] : (h << 16) >>> 0;
  }
  return out;
}

describe('transpose: four source rows at a time, into a given buffer', () => {
  test('equals the element-by-element transpose, bit for bit (NaN payloads too), on shapes around the 64-tile and 4-row edges', () => {
    for (const [rows, cols] of [[1, 1], [1, 7], [7, 1], [3, 5], [4, 4], [63, 65], [64, 64], [130, 67], [257, 6]]) {
      const a = weights(rows * cols, rows * 1000 + cols);
      const want = new Float32Array(rows * cols);
      const [from, to] = [bitsOf(a), bitsOf(want)]; // bits: NaN payloads travel as they are
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) to[c * rows + r] = from[r * cols + c];
      assert.deepEqual(bitsOf(transpose(a, rows, cols)), bitsOf(want), `${rows}×${cols}`);
      const out = new Float32Array(rows * cols).fill(7);
      assert.equal(transpose(a, rows, cols, out), out);
      assert.deepEqual(bitsOf(out), bitsOf(want), `${rows}×${cols} into a buffer`);
    }
    assert.throws(() => transpose(new Float32Array(6), 2, 3, new Float32Array(5)), RangeError);
  });

  test('transposeBits says whether every value is finite: a NaN, ±inf anywhere (4-row body, row tail) is found; ±max, subnormals, −0 are finite', () => {
    for (const [rows, cols] of [[7, 9], [130, 67]]) {
      const a = weights(rows * cols, rows + cols, false);
      const out = new Float32Array(rows * cols);
      assert.equal(transposeBits(a, rows, cols, out), true);
      for (const at of [0, 5, rows * cols - 1, (rows - 1) * cols + 2]) {
        for (const bad of [NaN, Infinity, -Infinity]) {
          const b = a.slice();
          b[at] = bad;
          assert.equal(transposeBits(b, rows, cols, out), false, `${bad} at ${at} of ${rows}×${cols}`);
          assert.ok(Object.is(out[(at % cols) * rows + Math.floor(at / cols)], bad), 'copied as it is');
        }
        for (const fine of [3.4028234663852886e38, -3.4028234663852886e38, 1e-45, -0]) {
          const b = a.slice();
          b[at] = fine;
          assert.equal(transposeBits(b, rows, cols, out), true, `${fine} at ${at}`);
        }
      }
    }
  });
});

describe('roundedBytes: roundToType(keepNonZero) and float32ToBytes in one pass', () => {
  const types = [DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE];
  const name = (t: DataType) => DataType[t];
  for (const valueType of types) {
    for (const bytesType of types) {
      test(`${name(valueType)} values, ${name(bytesType)} bytes: the same bits, new, in place or into a buffer`, () => {
        const a = weights(4099, valueType * 10 + bytesType);
        const input = a.slice();
        const want = roundToType(valueType, a, { keepNonZero: true });
        if (valueType === DataType.FLOAT16 || valueType === DataType.BFLOAT16) assert.deepEqual(bitsOf(want), bitsOf(simpleRound(valueType, a)));
        else assert.equal(want, a);
        const wantBytes = float32ToBytes(bytesType, want);
        const fresh = roundedBytes(valueType, bytesType, a);
        assert.deepEqual(bitsOf(fresh.values), bitsOf(want));
        assert.deepEqual(fresh.bytes, wantBytes);
        assert.deepEqual(bitsOf(a), bitsOf(input), 'the input is left as it was');
        const out = new Float32Array(a.length).fill(-1);
        const into = roundedBytes(valueType, bytesType, a, out);
        assert.equal(into.values, out);
        assert.deepEqual(bitsOf(out), bitsOf(want));
        assert.deepEqual(into.bytes, wantBytes);
        const inPlace = roundedBytes(valueType, bytesType, a, a);
        assert.equal(inPlace.values, a);
        assert.deepEqual(bitsOf(a), bitsOf(want));
        assert.deepEqual(inPlace.bytes, wantBytes);
      });
    }
  }

  test('a view of a larger buffer (as a layer inside one allocation) is read and written where it lies', () => {
    const whole = weights(1000, 5);
    const before = whole.slice();
    const view = whole.subarray(100, 900);
    const want = roundToType(DataType.FLOAT16, view, { keepNonZero: true });
    const { values, bytes } = roundedBytes(DataType.FLOAT16, DataType.FLOAT16, view, view);
    assert.deepEqual(bitsOf(values), bitsOf(want));
    assert.deepEqual(bytes, float32ToBytes(DataType.FLOAT16, want));
    assert.deepEqual(bitsOf(whole.subarray(0, 100)), bitsOf(before.subarray(0, 100)));
    assert.deepEqual(bitsOf(whole.subarray(900)), bitsOf(before.subarray(900)));
    const f = roundedBytes(DataType.FLOAT, DataType.FLOAT, view);
    assert.deepEqual(f.bytes, float32ToBytes(DataType.FLOAT, view));
    assert.throws(() => roundedBytes(DataType.FLOAT, DataType.FLOAT, view, new Float32Array(3)), RangeError);
    assert.throws(() => roundedBytes(DataType.INT8, DataType.FLOAT, view), RangeError);
  });
});

describe('countZeros and allFinite: branch-free passes over the bits', () => {
  test('countZeros counts ±0 as the === 0 loop does (NaN, subnormals and ±2, whose doubled bits are -2³¹, are not zeros)', () => {
    for (const [n, seed] of [[0, 1], [1, 2], [17, 3], [10007, 4]]) {
      const a = weights(n, seed);
      let want = 0;
      for (const v of a) if (v === 0) want++;
      assert.equal(countZeros(a), want);
      assert.equal(countZeros(a.subarray(1)), want - (a[0] === 0 ? 1 : 0));
    }
    assert.equal(countZeros(Float32Array.of(0, -0, 2, -2, 1.5e-45, -1.5e-45, NaN, Infinity)), 2);
  });

  test('allFinite is false exactly where some value is NaN or ±inf; validate names the first one and its index', () => {
    const a = weights(5000, 9, false);
    assert.equal(allFinite(a), true);
    assert.equal(allFinite(Float32Array.of(3.4e38, -3.4e38, 1.5e-45, -0, 0)), true);
    for (const bad of [NaN, Infinity, -Infinity]) {
      for (const i of [0, 2500, 4999]) {
        const b = a.slice();
        b[i] = bad;
        assert.equal(allFinite(b), false, `${bad} at ${i}`);
      }
    }
    const b = a.slice();
    new Uint32Array(b.buffer)[1234] = 0xff900000; // a negative NaN with a payload
    b[3000] = Infinity;
    const problem = { name: 'l', rows: 50, cols: 100, W: b };
    assert.throws(() => validate(problem, { pattern: { kind: 'unstructured', sparsity: 0.5 } }, METHODS.magnitude), /W: non-finite value NaN at index 1234/);
  });
});

describe('CalibrationSums.hessian: the scaling pass also finds H finite, and validate then reads H no more', () => {
  test('H as the simple scaling loop makes it, bit for bit; hessianFinite false before hessian() and with a NaN or inf', () => {
    for (const bad of [null, NaN, Infinity, -Infinity]) {
      const cols = 37;
      const sums = new CalibrationSums(cols);
      const xtx = weights(cols * cols, 11, false);
      if (bad !== null) xtx[500] = bad;
      sums.add(xtx, new Float32Array(cols), 3);
      assert.equal(sums.hessianFinite, false, 'not yet scaled');
      const want = xtx.slice();
      for (let i = 0; i < want.length; i++) want[i] *= 2 / 3;
      const H = sums.hessian();
      assert.deepEqual(bitsOf(H), bitsOf(want));
      assert.equal(sums.hessianFinite, bad === null);
      assert.equal(sums.hessian(), H, 'scaled once');
    }
  });

  test('validate checks H unless the caller has found it finite (finiteH); W is always checked', () => {
    const H = new Float32Array(100 * 100);
    H[42] = NaN;
    const W = weights(50 * 100, 12, false);
    const options = { pattern: { kind: 'unstructured', sparsity: 0.5 } as const };
    assert.throws(() => validate({ name: 'l', rows: 50, cols: 100, W, H }, options, METHODS.sparsegpt), /H: non-finite value NaN at index 42/);
    assert.doesNotThrow(() => validate({ name: 'l', rows: 50, cols: 100, W, H, finiteH: true }, options, METHODS.sparsegpt));
    const badW = W.slice();
    badW[7] = -Infinity;
    assert.throws(() => validate({ name: 'l', rows: 50, cols: 100, W: badW, H, finiteH: true }, options, METHODS.sparsegpt), /W: non-finite value -Infinity at index 7/);
  });
});
