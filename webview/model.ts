// The panels' view model: a run's events → the layer axis, chart series, table rows and summary the panels
// draw. Pure and DOM-free, so Node tests feed it real event streams; the render modules only turn it into
// elements. Progress numbers (layers done, ETA, perplexities, totals) come from the protocol's foldProgress,
// which the host's status bar and Runs view fold too, so every reader agrees.

import type { AllocationComputed, BlockFinished, Event, LayerPruned, RunCancelled, RunFailed, WarningRaised } from '../src/protocol/events';
import { emptyProgress, foldProgress, markInterrupted, RunProgress } from '../src/protocol/progress';
import { expertGroup } from '../src/protocol/pruning';
import type { RunSnapshot } from '../src/protocol/webview';

// ---------------------------------------------------------------------------------------------------------
// Layer kinds: what a linear layer does, read from the last component of its friendly name.

export const LAYER_KINDS = ['q', 'k', 'v', 'qkv', 'o', 'gate', 'up', 'gate_up', 'down', 'fc1', 'fc2', 'in_proj', 'conv1d', 'x_proj', 'dt_proj', 'out_proj', 'lm_head', 'other'] as const;
export type LayerKind = (typeof LAYER_KINDS)[number];

/** Kinds that play one role share a colour in the chart (and differ by point shape). */
export type LayerFamily = 'attention' | 'mlp' | 'fc' | 'ssm' | 'head' | 'other';

export const KIND_FAMILY: Readonly<Record<LayerKind, LayerFamily>> = {
  q: 'attention',
  k: 'attention',
  v: 'attention',
  qkv: 'attention',
  o: 'attention',
  gate: 'mlp',
  up: 'mlp',
  gate_up: 'mlp',
  down: 'mlp',
  fc1: 'fc',
  fc2: 'fc',
  in_proj: 'ssm',
  conv1d: 'ssm',
  x_proj: 'ssm',
  dt_proj: 'ssm',
  out_proj: 'ssm',
  lm_head: 'head',
  other: 'other',
};

const KIND_BY_COMPONENT: Readonly<Record<string, LayerKind>> = {
  q_proj: 'q',
  q: 'q',
  query: 'q',
  k_proj: 'k',
  k: 'k',
  key: 'k',
  v_proj: 'v',
  v: 'v',
  value: 'v',
  qkv_proj: 'qkv',
  o_proj: 'o',
  o: 'o',
  gate_up_proj: 'gate_up',
  c_attn: 'qkv', // GPT-2's fused q | k | v
  query_key_value: 'qkv', // GPT-NeoX's, interleaved per head
  c_fc: 'fc1',
  dense_h_to_4h: 'fc1',
  dense_4h_to_h: 'fc2',
  gate_proj: 'gate',
  w1: 'gate',
  up_proj: 'up',
  w3: 'up',
  down_proj: 'down',
  w2: 'down',
  fc1: 'fc1',
  fc2: 'fc2',
  in_proj: 'in_proj',
  conv1d: 'conv1d',
  x_proj: 'x_proj',
  dt_proj: 'dt_proj',
  out_proj: 'out_proj',
  lm_head: 'lm_head',
};

/** Components of a raw node name that say how, not what (`/model/layers.0/self_attn/q_proj/MatMul`). */
const OP_COMPONENTS = new Set(['matmul', 'gemm', 'weight']);

/** `layers.3.self_attn.q_proj` → `q`. An attention block's `out_proj` (OPT, BART) is its `o`; elsewhere
 *  (Mamba) `out_proj` is the SSM's output projection. GPT-2's `c_proj` and GPT-NeoX's `dense` are `o` in the
 *  attention and (GPT-2's) `fc2` in the MLP. */
export function layerKind(name: string): LayerKind {
  const parts = name.split(/[./]/).filter((p) => p !== '' && !OP_COMPONENTS.has(p.toLowerCase()));
  const last = parts[parts.length - 1] ?? '';
  const inAttention = parts.some((p) => /attn|attention/i.test(p));
  if (last === 'c_proj' || last === 'dense') return inAttention ? 'o' : last === 'c_proj' ? 'fc2' : 'other';
  const kind = KIND_BY_COMPONENT[last] ?? 'other';
  if (kind === 'out_proj' && inAttention) return 'o';
  return kind;
}

// ---------------------------------------------------------------------------------------------------------
// The layer axis: every targeted layer in the run's order, so the chart's x axis is fixed from run.started and
// points fill in as layers are pruned.

export interface AxisLayer {
  name: string;
  /** The block's name ("layers.3"); null outside every block (the LM head). */
  blockName: string | null;
}

/** A maximal run of consecutive axis positions in one block: [from, to] inclusive. */
export interface BlockBand {
  name: string;
  from: number;
  to: number;
}

export class LayerAxis {
  readonly layers: AxisLayer[] = [];
  private readonly index = new Map<string, number>();

  /** Position of a layer, adding it at the end when the axis has not seen it. */
  place(name: string, blockName: string | null): number {
    let i = this.index.get(name);
    if (i === undefined) {
      i = this.layers.length;
      this.layers.push({ name, blockName });
      this.index.set(name, i);
    }
    return i;
  }

  positionOf(name: string): number | undefined {
    return this.index.get(name);
  }

  get length(): number {
    return this.layers.length;
  }

  blocks(): BlockBand[] {
    const bands: BlockBand[] = [];
    this.layers.forEach((l, i) => {
      const last = bands[bands.length - 1];
      if (l.blockName === null) return;
      if (last && last.name === l.blockName && last.to === i - 1) last.to = i;
      else bands.push({ name: l.blockName, from: i, to: i });
    });
    return bands;
  }
}

// ---------------------------------------------------------------------------------------------------------
// One run

export type LossMode = 'loss' | 'relLoss';

/** A pruned layer as the chart and the table show it: the layer.pruned event's fields (the protocol's, so they
 *  cannot drift) plus where it sits and what kind of layer it is. */
export interface LayerRow extends Omit<LayerPruned, 'v' | 'type'> {
  /** Position on the layer axis. */
  position: number;
  blockName: string | null;
  kind: LayerKind;
  family: LayerFamily;
}

export interface ChartPoint {
  /** Axis position. */
  x: number;
  y: number;
  row: LayerRow;
}

export interface KindSeries {
  kind: LayerKind;
  family: LayerFamily;
  points: ChartPoint[];
}

/** What ended the run, when something did; null while it runs or once it finished. */
export type RunEnding =
  | { kind: 'failed'; code: string; message: string; hint?: string; problems: { jsonPath: string; message: string }[]; where: string[] }
  | { kind: 'cancelled'; signal: RunCancelled['signal']; lastLayer: string | null; seconds: number }
  | { kind: 'interrupted'; message: string };

export interface RunSummary {
  densePerplexity: number | null;
  prunedPerplexity: number | null;
  /** The run's own time (run.finished / run.cancelled), else the host clock from first to last event. */
  seconds: number | null;
  lossSum: number | null;
  totals: RunProgress['totals'];
  output: string | null;
}

/** A point of the chart needs a positive value (log scale); a layer without one is listed but not drawn. */
export function chartValue(row: LayerRow, mode: LossMode): number | null {
  const y = row[mode];
  return y !== null && y > 0 ? y : null;
}

export class RunModel {
  progress: RunProgress = emptyProgress();
  readonly axis = new LayerAxis();
  /** Pruned layers, in the order they arrived. */
  readonly rows: LayerRow[] = [];
  readonly blocksFinished: BlockFinished[] = [];
  readonly warnings: WarningRaised[] = [];
  private failed: RunFailed | null = null;
  private cancelled: RunCancelled | null = null;
  private interruption: string | null = null;
  private blockNames: string[] = [];
  /** OWL's per-block sparsities, when the run used allocation "owl". */
  allocation: AllocationComputed | null = null;

  constructor(
    readonly id: string,
    readonly label: string,
  ) {}

  static fromSnapshot(s: RunSnapshot): RunModel {
    const m = new RunModel(s.id, s.label);
    s.events.forEach((e, i) => m.add(e, s.times[i] ?? 0));
    if (s.status === 'interrupted') m.interrupt(s.interruption ?? 'the backend ended without finishing the run');
    return m;
  }

  /** One more event; `time` is the host clock at which it arrived (ms). */
  add(e: Event, time: number): void {
    this.progress = foldProgress(this.progress, e, time);
    switch (e.type) {
      case 'run.started':
        this.blockNames = e.blocks.map((b) => b.name);
        for (const l of e.layers) if (l.target !== null) this.axis.place(l.name, this.blockName(l.block));
        break;
      case 'layer.pruned':
        this.rows.push(this.row(e));
        break;
      case 'allocation.computed':
        this.allocation = e;
        break;
      case 'block.finished':
        this.blocksFinished.push(e);
        break;
      case 'warning.raised':
        this.warnings.push(e);
        break;
      case 'run.failed':
        this.failed = e;
        break;
      case 'run.cancelled':
        this.cancelled = e;
        break;
    }
  }

  /** The backend process ended without a terminal event. */
  interrupt(message: string): void {
    if (this.progress.status !== 'running') return;
    this.interruption = message;
    this.progress = markInterrupted(this.progress, message);
  }

  get status(): RunProgress['status'] {
    return this.progress.status;
  }

  /** Chart series, one per layer kind present, each in axis order. */
  series(mode: LossMode): KindSeries[] {
    const byKind = new Map<LayerKind, KindSeries>();
    for (const row of this.rows) {
      const y = chartValue(row, mode);
      if (y === null) continue;
      let s = byKind.get(row.kind);
      if (!s) byKind.set(row.kind, (s = { kind: row.kind, family: row.family, points: [] }));
      s.points.push({ x: row.position, y, row });
    }
    for (const s of byKind.values()) s.points.sort((a, b) => a.x - b.x);
    return LAYER_KINDS.flatMap((k) => byKind.get(k) ?? []);
  }

  /** Each pruned layer's sparsity in axis order (the chart's second axis), when the layers' targets differ
   *  (an OWL allocation or per-layer overrides); null when every layer has the same target. */
  sparsitySeries(): ChartPoint[] | null {
    const targets = new Set(this.rows.map((r) => r.targetSparsity));
    if (this.allocation === null && targets.size <= 1) return null;
    return this.rows.map((row) => ({ x: row.position, y: row.sparsity, row })).sort((a, b) => a.x - b.x);
  }

  /** Layers drawn on the chart in this mode. */
  charted(mode: LossMode): number {
    return this.rows.filter((r) => chartValue(r, mode) !== null).length;
  }

  summary(): RunSummary {
    const p = this.progress;
    const clock = p.startedAt !== null && p.updatedAt !== null ? (p.updatedAt - p.startedAt) / 1000 : null;
    return {
      densePerplexity: p.densePerplexity,
      prunedPerplexity: p.prunedPerplexity,
      seconds: p.totals?.seconds ?? this.cancelled?.seconds ?? clock,
      lossSum: p.lossSum,
      totals: p.totals,
      output: p.output,
    };
  }

  ending(): RunEnding | null {
    if (this.failed) {
      const f = this.failed;
      const where = [f.file && `file ${f.file}`, f.jsonPath && `at ${f.jsonPath}`, f.layer && `layer ${f.layer}`].filter((s): s is string => !!s);
      return { kind: 'failed', code: f.code, message: f.message, ...(f.hint !== undefined ? { hint: f.hint } : {}), problems: f.problems ?? [], where };
    }
    if (this.cancelled) return { kind: 'cancelled', signal: this.cancelled.signal, lastLayer: this.cancelled.lastLayer, seconds: this.cancelled.seconds };
    if (this.interruption !== null) return { kind: 'interrupted', message: this.interruption };
    return null;
  }

  private blockName(block: number | null): string | null {
    return block === null ? null : (this.blockNames[block] ?? `block ${block}`);
  }

  private row(e: LayerPruned): LayerRow {
    const { v, type, ...fields } = e; // the row is the event without its envelope
    const blockName = this.blockName(e.block);
    const kind = layerKind(e.layer);
    return { ...fields, position: this.axis.place(e.layer, blockName), blockName, kind, family: KIND_FAMILY[kind] };
  }

}

// ---------------------------------------------------------------------------------------------------------
// MoE experts in the table: one row per block and projection (`layers.0.mlp.experts.*.up_proj`), so a 64-expert
// block stays readable; the chart keeps every expert's point.

/** `rows` with each expert group merged: at its first expert's position, loss and time summed, sparsity and
 *  relative loss averaged (the experts of a group have one shape), the experts' notes kept once each. */
export function groupExpertRows(rows: readonly LayerRow[]): LayerRow[] {
  const groups = new Map<string, LayerRow[]>();
  const out: (LayerRow | string)[] = [];
  for (const r of rows) {
    const g = expertGroup(r.layer)?.group;
    if (!g) { out.push(r); continue; }
    const members = groups.get(g);
    if (members) members.push(r);
    else { groups.set(g, [r]); out.push(g); }
  }
  return out.map((r) => (typeof r === 'string' ? mergeExperts(r, groups.get(r) as LayerRow[]) : r));
}

function mergeExperts(group: string, members: LayerRow[]): LayerRow {
  if (members.length === 1) return members[0];
  const sum = (f: (r: LayerRow) => number | null): number | null =>
    members.some((r) => f(r) === null) ? null : members.reduce((a, r) => a + (f(r) as number), 0);
  const mean = (f: (r: LayerRow) => number | null): number | null => {
    const s = sum(f);
    return s === null ? null : s / members.length;
  };
  const first = members[0];
  const methods = [...new Set(members.map((r) => r.method))];
  return {
    ...first,
    layer: group,
    position: Math.min(...members.map((r) => r.position)),
    sparsity: mean((r) => r.sparsity) as number,
    loss: sum((r) => r.loss),
    relLoss: mean((r) => r.relLoss),
    seconds: sum((r) => r.seconds) as number,
    notes: [`${members.length} experts: loss and time summed, sparsity and relative loss averaged${methods.length > 1 ? `; methods ${methods.join(', ')}` : ''}`,
      ...new Set(members.flatMap((r) => r.notes.map((n) => `${expertGroup(r.layer)?.expert}: ${n}`)))],
  };
}

// ---------------------------------------------------------------------------------------------------------
// The layer table's order

export const SORT_KEYS = ['position', 'layer', 'kind', 'shape', 'sparsity', 'loss', 'relLoss', 'seconds'] as const;
export type SortKey = (typeof SORT_KEYS)[number];
export interface SortOrder {
  key: SortKey;
  descending: boolean;
}

function sortValue(r: LayerRow, key: SortKey): number | string | null {
  if (key === 'shape') return r.shape[0] * r.shape[1];
  return r[key];
}

/** Rows sorted by one column; missing values (no loss) last in either direction, ties in axis order. */
export function sortRows(rows: readonly LayerRow[], order: SortOrder): LayerRow[] {
  const sign = order.descending ? -1 : 1;
  return [...rows].sort((a, b) => {
    const x = sortValue(a, order.key);
    const y = sortValue(b, order.key);
    if (x === null || y === null) return x === y ? a.position - b.position : x === null ? 1 : -1;
    const c = typeof x === 'string' || typeof y === 'string' ? String(x).localeCompare(String(y)) : x - y;
    return c !== 0 ? sign * c : a.position - b.position;
  });
}

// ---------------------------------------------------------------------------------------------------------
// The Compare panel: several runs over one layer axis.

export interface CompareRun {
  id: string;
  label: string;
  status: RunProgress['status'];
  method: RunProgress['method'];
  pattern: RunProgress['pattern'];
  sparsity: number | null;
  densePerplexity: number | null;
  prunedPerplexity: number | null;
  lossSum: number | null;
  seconds: number | null;
  /** Points on the shared axis, in axis order. */
  points(mode: LossMode): ChartPoint[];
}

export interface CompareView {
  axis: LayerAxis;
  runs: CompareRun[];
}

/** Runs folded, their layers merged into one axis (first run's order first; layers another run adds go after). */
export function compareView(snapshots: readonly RunSnapshot[]): CompareView {
  const axis = new LayerAxis();
  const models = snapshots.map((s) => RunModel.fromSnapshot(s));
  for (const m of models) for (const l of m.axis.layers) axis.place(l.name, l.blockName);
  const runs = models.map((m): CompareRun => {
    const s = m.summary();
    return {
      id: m.id,
      label: m.label,
      status: m.status,
      method: m.progress.method,
      pattern: m.progress.pattern,
      sparsity: m.progress.sparsity,
      densePerplexity: s.densePerplexity,
      prunedPerplexity: s.prunedPerplexity,
      lossSum: s.lossSum,
      seconds: s.seconds,
      points: (mode) =>
        m.rows
          .flatMap((row) => {
            const y = chartValue(row, mode);
            // Every row's layer is on its run's axis, so on the merged one.
            return y === null ? [] : [{ x: axis.positionOf(row.layer)!, y, row }];
          })
          .sort((a, b) => a.x - b.x),
    };
  });
  return { axis, runs };
}
