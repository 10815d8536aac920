// How numbers read in the panels. Pure, so the view model's tests and the page's tests agree on the text.

const DASH = '—';

/** Perplexity with 4 decimals (the contract the panels' tests read back). */
export function formatPerplexity(x: number | null): string {
  return x === null ? DASH : x.toFixed(4);
}

const SIG4 = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 4 });

/** A loss: 4 significant digits, scientific when very large or very small. */
export function formatLoss(x: number | null): string {
  if (x === null) return DASH;
  if (x !== 0 && (Math.abs(x) >= 1e6 || Math.abs(x) < 1e-3)) return x.toExponential(3);
  return SIG4.format(x);
}

export function formatPercent(x: number | null, digits = 2): string {
  return x === null ? DASH : `${(100 * x).toFixed(digits)} %`;
}

/** "0.42 s", "12.3 s", "4 min 05 s", "1 h 02 min". */
export function formatSeconds(s: number | null): string {
  if (s === null) return DASH;
  if (s < 10) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const total = Math.round(s);
  if (total < 3600) return `${Math.floor(total / 60)} min ${String(total % 60).padStart(2, '0')} s`;
  return `${Math.floor(total / 3600)} h ${String(Math.floor((total % 3600) / 60)).padStart(2, '0')} min`;
}

export function formatCount(n: number | null): string {
  return n === null ? DASH : n.toLocaleString('en-US');
}

export function formatBytes(n: number | null): string {
  if (n === null) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let x = n;
  let u = 0;
  while (x >= 1024 && u < units.length - 1) {
    x /= 1024;
    u += 1;
  }
  return `${u === 0 ? x : x.toFixed(1)} ${units[u]}`;
}

export function formatShape(shape: readonly [number, number]): string {
  return `${shape[0]}×${shape[1]}`;
}
