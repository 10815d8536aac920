// Mask selection shared by the methods: k-th value thresholds, per-row and per-group (N:M) choices.
// Convention everywhere: mask value 1 = pruned.

import { mulberry32 } from '../random';

/** The k-th smallest value (0-based) of `values` (copied; the input is not reordered). O(n) average. */
export function kthSmallest(values: ArrayLike<number>, k: number): number {
  const a = Float64Array.from(values as ArrayLike<number>);
  if (k < 0 || k >= a.length) throw new RangeError(`k=${k} outside [0, ${a.length})`);
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    // Median-of-three pivot, Hoare partition.
    const mid = (lo + hi) >>> 1;
    const pivot = median3(a[lo], a[mid], a[hi]);
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i]; a[i] = a[j]; a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

/**
 * The same k-th smallest value as kthSmallest, for scores that are all >= 0 (undefined otherwise). For
 * non-negative doubles the bit patterns sort like the values, so one pass histograms the top 16 bits
 * (sign, exponent, 4 mantissa bits) and quickselect only runs on the bucket that holds the k-th value:
 * about 4× faster than quickselect on the whole array for SparseGPT's rows×128 block scores.
 */
export function kthSmallestNonNegative(values: Float64Array, k: number): number | undefined {
  const n = values.length;
  if (k < 0 || k >= n || n < 4096 || values.byteOffset % 8) return undefined;
  const words = new Uint32Array(values.buffer, values.byteOffset, 2 * n); // little-endian: high word at 2i+1
  const counts = new Uint32Array(65536);
  for (let i = 0; i < n; i++) {
    const hi = words[2 * i + 1];
    if (hi >>> 31) return undefined; // a negative value (or -0): fall back
    counts[hi >>> 16]++;
  }
  let bucket = 0;
  let before = 0;
  while (before + counts[bucket] <= k) before += counts[bucket++];
  const inBucket = new Float64Array(counts[bucket]);
  let m = 0;
  for (let i = 0; i < n; i++) if (words[2 * i + 1] >>> 16 === bucket) inBucket[m++] = values[i];
  return kthSmallest(inBucket, k - before);
}

/**
 * A bracket [lo, hi] that holds the k-th smallest (0-based) of n values with overwhelming probability, from a sample
 * of 8192 of them (the sampling step of Floyd and Rivest's selection): the sample's order statistics at k·m/n ± 6
 * standard deviations of the k-th value's rank in the sample (±5.5% of the sample around the median). The caller then
 * needs one pass that counts the values below the bracket and keeps the few inside, and must fall back to an exact
 * selection if the k-th value was not among them. The sample is 512 runs of 16 consecutive values (two cache lines
 * each, where single values cost one cache miss apiece) at pseudo-random multiples of 16: reproducible, and with no
 * row or column pattern for a (rows, B) block whose B is a multiple of 16.
 */
export function sampleBracket(n: number, k: number, valueAt: (i: number) => number): { lo: number; hi: number } {
  const run = 16;
  const m = 512 * run;
  if (n < 8 * m) return { lo: -Infinity, hi: Infinity };
  const sample = new Float64Array(m);
  const starts = Math.floor(n / run);
  const rand = mulberry32(0x9e3779b9);
  for (let j = 0; j < m; j += run) {
    const i0 = Math.floor(rand() * starts) * run;
    for (let t = 0; t < run; t++) sample[j + t] = valueAt(i0 + t);
  }
  const p = k / n;
  const delta = Math.ceil(6 * Math.sqrt(m * p * (1 - p))) + 2;
  const at = Math.floor(p * m);
  return {
    lo: at - delta < 0 ? -Infinity : kthSmallest(sample, at - delta),
    hi: at + delta >= m ? Infinity : kthSmallest(sample, at + delta),
  };
}

/** kthSmallest of |values| for float32 values, without a float64 copy of them all: the magnitudes' bit patterns
 *  sort like the magnitudes, so a histogram of their top 16 bits finds the bucket holding the k-th one. */
export function kthSmallestAbs(values: Float32Array, k: number): number {
  const n = values.length;
  if (k < 0 || k >= n) throw new RangeError(`k=${k} outside [0, ${n})`);
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  const counts = new Uint32Array(65536);
  for (let i = 0; i < n; i++) counts[(bits[i] & 0x7fffffff) >>> 15]++;
  let bucket = 0;
  let before = 0;
  while (before + counts[bucket] <= k) before += counts[bucket++];
  const inBucket = new Float64Array(counts[bucket]);
  let m = 0;
  for (let i = 0; i < n; i++) if ((bits[i] & 0x7fffffff) >>> 15 === bucket) inBucket[m++] = Math.abs(values[i]);
  return kthSmallest(inBucket, k - before);
}

function median3(a: number, b: number, c: number): number {
  return a < b ? (b < c ? b : a < c ? c : a) : a < c ? a : b < c ? c : b;
}

/**
 * SparseGPT's adaptive rule over a set of scores: thresh = sorted(scores)[floor(len·sparsity)], prune every
 * score <= thresh. (So at least floor(len·s)+1 entries are pruned; ties prune together.)
 */
export function thresholdMask(scores: Float64Array, sparsity: number, mask: Uint8Array, offset = 0): void {
  const k = Math.floor(scores.length * sparsity);
  const thresh = kthSmallestNonNegative(scores, k) ?? kthSmallest(scores, k);
  // +(a <= b), not a ternary: V8 then emits no branch, and at 50% sparsity the branch mispredicts half the time (≈ 8× slower).
  for (let i = 0; i < scores.length; i++) mask[offset + i] = +(scores[i] <= thresh);
}

/** Wanda's per-row rule: in each row, prune exactly floor(cols·sparsity) entries with the smallest scores
 *  (stable: among equal scores the leftmost go first, as torch.sort(stable=True)). */
export function perRowMask(scores: Float64Array, rows: number, cols: number, sparsity: number, mask: Uint8Array): void {
  const k = Math.floor(cols * sparsity);
  for (let r = 0; r < rows; r++) {
    const row = scores.subarray(r * cols, (r + 1) * cols);
    mask.fill(0, r * cols, (r + 1) * cols);
    if (k === 0) continue;
    const thresh = kthSmallest(row, k - 1);
    let left = k;
    for (let j = 0; j < cols; j++) if (row[j] < thresh) { mask[r * cols + j] = 1; left--; }
    for (let j = 0; j < cols && left > 0; j++) if (row[j] === thresh) { mask[r * cols + j] = 1; left--; }
  }
}

/** The n smallest of scores[start..start+m) (ties: leftmost first) are marked pruned in mask[maskStart..]. */
export function nmGroupMask(scores: ArrayLike<number>, start: number, m: number, n: number, mask: Uint8Array, maskStart: number): void {
  for (let j = 0; j < m; j++) mask[maskStart + j] = 0;
  for (let t = 0; t < n; t++) {
    let best = -1;
    for (let j = 0; j < m; j++) {
      if (mask[maskStart + j]) continue;
      if (best < 0 || scores[start + j] < scores[start + best]) best = j;
    }
    mask[maskStart + best] = 1;
  }
}

/** N:M over a whole (rows, cols) score matrix; a trailing partial group (cols % m) stays dense. */
export function nmMask(scores: Float64Array, rows: number, cols: number, n: number, m: number, mask: Uint8Array): void {
  const full = cols - (cols % m);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < full; g += m) nmGroupMask(scores, r * cols + g, m, n, mask, r * cols + g);
    for (let j = full; j < cols; j++) mask[r * cols + j] = 0;
  }
}

/** All size-n subsets of {0..m-1}, in lexicographic order. */
export function combinations(m: number, n: number): number[][] {
  const out: number[][] = [];
  const cur: number[] = [];
  const rec = (start: number): void => {
    if (cur.length === n) {
      out.push([...cur]);
      return;
    }
    for (let j = start; j <= m - (n - cur.length); j++) {
      cur.push(j);
      rec(j + 1);
      cur.pop();
    }
  };
  rec(0);
  return out;
}
