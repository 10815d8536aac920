// The Sweep panel: perplexity against sparsity, one line per method and pattern (and per value of the other swept
// keys), the dense model at sparsity 0, a linear/log toggle, and a table of every point (#sweep-table) with its status
// and Slurm job id. Clicking a point (on the chart or in the table) asks the host for its run panel.

import { Chart, ChartEvent } from 'chart.js';
import type { SweepPoint } from '../src/protocol/sweep';
import type { SweepSnapshot } from '../src/protocol/webview';
import { el } from './dom';
import { formatPercent, formatPerplexity, formatSeconds } from './format';
import { applyChartTheme, CHART_BASE_OPTIONS } from './lossChart'; // registers the chart.js pieces both charts use
import { readTheme, seriesColor, withAlpha } from './theme';
import { toggle } from './toolkit';

type Scale = 'linear' | 'logarithmic';
const SCALES = [
  { value: 'linear' as const, label: 'Linear' },
  { value: 'logarithmic' as const, label: 'Log' },
];

export interface SweepLine {
  label: string;
  /** Sorted by sparsity; only finished points with a perplexity. */
  points: { x: number; y: number; point: string }[];
}

/** One line per series: the method and pattern, and the other swept keys' values (they change the run too). */
export function sweepLines(s: SweepSnapshot): SweepLine[] {
  const others = s.index.keys.filter((k) => k !== 'method' && k !== 'sparsity' && k !== 'pattern');
  const lines = new Map<string, SweepLine>();
  for (const p of s.index.points) {
    const ppl = s.results[p.name]?.prunedPerplexity;
    if (ppl == null) continue;
    const label = [p.method, p.pattern, ...others.map((k) => `${k.split('.').pop()}=${String(p.values[k])}`)].join(' ');
    const line = lines.get(label) ?? { label, points: [] };
    line.points.push({ x: p.sparsity, y: ppl, point: p.name });
    lines.set(label, line);
  }
  for (const l of lines.values()) l.points.sort((a, b) => a.x - b.x);
  return [...lines.values()];
}

/** The dense model's perplexity (every point measures or reads the same one). */
function densePerplexity(s: SweepSnapshot): number | null {
  for (const r of Object.values(s.results)) if (r?.densePerplexity != null) return r.densePerplexity;
  return null;
}

const COLUMNS: { title: string; numeric: boolean; cell: (p: SweepPoint, s: SweepSnapshot) => string }[] = [
  { title: 'Point', numeric: false, cell: (p) => p.name },
  { title: 'Status', numeric: false, cell: (p) => p.status + (p.message && p.status !== 'finished' ? `: ${p.message}` : '') },
  { title: 'Method', numeric: false, cell: (p) => p.method },
  { title: 'Pattern', numeric: false, cell: (p) => p.pattern },
  { title: 'Sparsity', numeric: true, cell: (p, s) => formatPercent(s.results[p.name]?.sparsity ?? p.sparsity, 1) },
  { title: 'Pruned perplexity', numeric: true, cell: (p, s) => formatPerplexity(s.results[p.name]?.prunedPerplexity ?? null) },
  { title: 'Time', numeric: true, cell: (p, s) => formatSeconds(s.results[p.name]?.seconds ?? null) },
  { title: 'Slurm job', numeric: false, cell: (p) => p.jobId ?? '—' },
];

export class SweepPanel {
  private readonly chart: Chart<'scatter'>;
  private scale: Scale = 'linear';
  private lines: SweepLine[] = [];

  constructor(
    private readonly app: HTMLElement,
    private sweep: SweepSnapshot,
    private readonly openPoint: (point: string) => void,
  ) {
    const canvas = el('canvas', { id: 'sweep-chart', role: 'img', 'aria-label': 'Perplexity against sparsity, one line per method and pattern (the table lists every point)' });
    app.replaceChildren(
      el('header', { id: 'header' }, el('h1', {}, ''), el('p', { id: 'sweep-summary', class: 'muted' })),
      el(
        'section',
        { id: 'chart-section', 'aria-label': 'Perplexity against sparsity' },
        el('div', { class: 'toolbar' }, toggle('Perplexity axis', SCALES, this.scale, (v) => this.setScale(v))),
        el('div', { class: 'chart-box' }, canvas),
      ),
      el(
        'section',
        { id: 'points', 'aria-label': 'Points' },
        el(
          'table',
          { id: 'sweep-table', class: 'data' },
          el('caption', {}, 'Points (click one to open its run)'),
          el('thead', {}, el('tr', {}, ...COLUMNS.map((c) => el('th', { scope: 'col', class: c.numeric ? 'num' : '' }, c.title)))),
          el('tbody'),
        ),
      ),
    );
    this.chart = new Chart(canvas, {
      type: 'scatter',
      data: { datasets: [] },
      options: {
        ...CHART_BASE_OPTIONS,
        scales: {
          x: { type: 'linear', min: 0, max: 1, title: { display: true, text: 'sparsity' }, ticks: { callback: (v) => formatPercent(Number(v), 0) } },
          y: { type: this.scale, title: { display: true, text: 'perplexity (evaluation text)' } },
        },
        plugins: { legend: { position: 'bottom', labels: { usePointStyle: true } } },
        onClick: (e: ChartEvent) => this.clicked(e),
      },
    });
    Object.defineProperty(canvas, 'chart', { value: this.chart, configurable: true });
    applyChartTheme(this.chart, readTheme());
    this.draw();
  }

  setSweep(sweep: SweepSnapshot): void {
    this.sweep = sweep;
    this.draw();
  }

  themeChanged(): void {
    applyChartTheme(this.chart, readTheme());
    this.drawChart();
  }

  destroy(): void {
    this.chart.destroy();
  }

  private setScale(scale: Scale): void {
    this.scale = scale;
    this.chart.options.scales!.y!.type = scale;
    this.drawChart();
  }

  private draw(): void {
    const s = this.sweep;
    const count = (st: SweepPoint['status']) => s.index.points.filter((p) => p.status === st).length;
    this.app.querySelector('#header h1')!.textContent = s.label;
    this.app.querySelector('#sweep-summary')!.textContent =
      `${count('finished')} finished · ${count('running')} running · ${count('queued')} queued · ${count('failed')} failed · ${count('cancelled')} cancelled · executor ${s.index.executor}${s.index.slurm ? ` (job ${s.index.slurm.jobId})` : ''}`;
    this.app.querySelector('#sweep-table tbody')?.replaceChildren(
      ...s.index.points.map((p) => {
        const row = el('tr', { 'data-point': p.name, 'data-status': p.status, tabindex: '0' }, ...COLUMNS.map((c) => el('td', { class: c.numeric ? 'num' : '' }, c.cell(p, s))));
        row.addEventListener('click', () => this.openPoint(p.name));
        row.addEventListener('keydown', (e) => e.key === 'Enter' && this.openPoint(p.name));
        return row;
      }),
    );
    this.drawChart();
  }

  private drawChart(): void {
    const theme = readTheme();
    this.lines = sweepLines(this.sweep);
    const dense = densePerplexity(this.sweep);
    this.chart.data.datasets = [
      ...this.lines.map((l, i) => {
        const color = seriesColor(theme, i);
        return { label: l.label, data: l.points.map(({ x, y }) => ({ x, y })), showLine: true, borderColor: color, backgroundColor: withAlpha(color, 0.75), pointRadius: 4, pointHoverRadius: 6, borderWidth: 1.5 };
      }),
      ...(dense === null ? [] : [{ label: 'dense', data: [{ x: 0, y: dense }], showLine: false, borderColor: theme.foreground, backgroundColor: theme.foreground, pointStyle: 'rectRot' as const, pointRadius: 5 }]),
    ];
    this.chart.update('none');
    this.app.dataset.pointsCharted = String(this.lines.reduce((n, l) => n + l.points.length, 0));
  }

  private clicked(e: ChartEvent): void {
    const hit = this.chart.getElementsAtEventForMode(e.native as Event, 'nearest', { intersect: true }, false)[0];
    const point = hit ? this.lines[hit.datasetIndex]?.points[hit.index]?.point : undefined;
    if (point) this.openPoint(point);
  }
}
