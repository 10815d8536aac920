// Words for a run, shared by the Runs view, the status bar and quick picks (all folded by foldProgress, so
// every surface says the same "12/35 layers · ETA 40s").

import { pathsOf } from '../../protocol/config';
import { deviceLabel, RunProgress } from '../../protocol/progress';

/** "40s", "3m 05s", "1h 02m". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A model's short name: the folder of a model.onnx, else the .onnx file's stem, else the folder. */
export function modelName(checkpoint: string): string {
  const paths = pathsOf(checkpoint); // a remote's events may name Windows paths
  const base = paths.basename(checkpoint);
  if (/^model\.onnx$/i.test(base)) return paths.basename(paths.dirname(checkpoint));
  return base.replace(/\.onnx$/i, '');
}

/** "apt 2:4", "magnitude 50%", or null before run.started told. */
export function methodTag(p: RunProgress): string | null {
  if (p.method === null) return null;
  if (p.pattern !== null && p.pattern !== 'unstructured') return `${p.method} ${p.pattern}`;
  return p.sparsity === null ? p.method : `${p.method} ${Math.round(p.sparsity * 100)}%`;
}

/** "stories260K · apt 2:4". */
export function runLabel(checkpoint: string, p: RunProgress): string {
  const tag = methodTag(p);
  return tag === null ? modelName(checkpoint) : `${modelName(checkpoint)} · ${tag}`;
}

const perplexity = (x: number | null) => (x === null ? '—' : x.toPrecision(5));

/** One line for the Runs view's description. */
export function describeProgress(p: RunProgress): string {
  const tag = methodTag(p);
  const parts: string[] = tag === null ? [] : [tag];
  switch (p.status) {
    case 'running':
      if (p.layersTotal > 0) parts.push(`${p.layersDone}/${p.layersTotal} layers`);
      else parts.push(p.phase);
      if (p.etaSeconds !== null) parts.push(`ETA ${formatDuration(p.etaSeconds)}`);
      break;
    case 'finished':
      parts.push(p.prunedPerplexity !== null ? `ppl ${perplexity(p.densePerplexity)} → ${perplexity(p.prunedPerplexity)}` : 'finished');
      break;
    default:
      parts.push(p.status);
  }
  return parts.join(' · ');
}

/** Several lines for a tooltip. */
export function describeDetails(p: RunProgress): string[] {
  const lines = [`Status: ${p.status}${p.status === 'running' ? ` (${p.phase})` : ''}`];
  if (p.model !== null) lines.push(`Model: ${p.model}`);
  if (p.device !== null) lines.push(`Device: ${deviceLabel(p)}`);
  if (p.layersTotal > 0) lines.push(`Layers: ${p.layersDone}/${p.layersTotal}, blocks ${p.blocksDone}/${p.blocksTotal}`);
  if (p.status === 'running') lines.push(`Progress: ${Math.round(p.fraction * 100)}%${p.etaSeconds !== null ? `, ETA ${formatDuration(p.etaSeconds)}` : ''}`);
  if (p.densePerplexity !== null || p.prunedPerplexity !== null) {
    lines.push(`Perplexity: dense ${perplexity(p.densePerplexity)}, pruned ${perplexity(p.prunedPerplexity)}`);
  }
  if (p.lossSum !== null) lines.push(`Summed loss: ${p.lossSum.toExponential(3)}`);
  if (p.totals !== null) lines.push(`Sparsity: ${(p.totals.sparsity * 100).toFixed(2)}% of pruned layers, ${(p.totals.modelSparsity * 100).toFixed(2)}% of the model; ${formatDuration(p.totals.seconds)}`);
  if (p.output !== null) lines.push(`Output: ${p.output}`);
  if (p.warnings > 0) lines.push(`Warnings: ${p.warnings}`);
  if (p.error !== null) lines.push(`Error (${p.error.code}): ${p.error.message}${p.error.hint ? `\n${p.error.hint}` : ''}`);
  return lines;
}

/** The status bar's text: "34% · ETA 40s". */
export function describeShort(p: RunProgress): string {
  const pct = `${Math.round(p.fraction * 100)}%`;
  return p.etaSeconds === null ? pct : `${pct} · ETA ${formatDuration(p.etaSeconds)}`;
}

/** The Output channel's last word on a run, in the CLI's own words ("done in 3.2 s: 35 layers, sparsity 0.500, ..."). */
export function describeEnd(p: RunProgress, interruption: string | undefined): string {
  switch (p.status) {
    case 'finished': {
      const t = p.totals;
      if (t === null) return 'finished';
      const ppl = t.prunedPerplexity !== null && t.densePerplexity !== null ? `, perplexity ${t.densePerplexity.toFixed(4)} → ${t.prunedPerplexity.toFixed(4)}` : '';
      return `done in ${t.seconds.toFixed(1)} s: ${t.layers} layers, sparsity ${t.sparsity.toFixed(3)}, summed loss ${t.loss === null ? '—' : t.loss.toExponential(3)}${ppl}; output: ${p.output}`;
    }
    case 'failed':
      return `failed (${p.error?.code}): ${p.error?.message}${p.error?.hint ? `\n  ${p.error.hint}` : ''}`;
    case 'cancelled':
      return 'cancelled; no output was written';
    case 'interrupted':
      return interruption ?? 'interrupted';
    default:
      return p.phase;
  }
}
