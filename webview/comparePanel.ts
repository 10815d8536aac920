// The Compare panel: finished runs' per-layer losses overlaid on one layer axis (one dataset per run) and a
// table of their headline numbers (#compare-table, one row per run).

import type { RunSnapshot } from '../src/protocol/webview';
import { el } from './dom';
import { formatLoss, formatPercent, formatPerplexity, formatSeconds, formatShape } from './format';
import { LOSS_MODES, LossChart, Y_TITLE } from './lossChart';
import { compareView, CompareView, LossMode } from './model';
import { readTheme, seriesColor } from './theme';
import { toggle } from './toolkit';

const COLUMNS: { title: string; numeric: boolean; cell: (r: CompareView['runs'][number]) => string }[] = [
  { title: 'Run', numeric: false, cell: (r) => r.label },
  { title: 'Status', numeric: false, cell: (r) => r.status },
  { title: 'Method', numeric: false, cell: (r) => r.method ?? '—' },
  { title: 'Pattern', numeric: false, cell: (r) => r.pattern ?? '—' },
  { title: 'Sparsity', numeric: true, cell: (r) => formatPercent(r.sparsity, 1) },
  { title: 'Dense perplexity', numeric: true, cell: (r) => formatPerplexity(r.densePerplexity) },
  { title: 'Pruned perplexity', numeric: true, cell: (r) => formatPerplexity(r.prunedPerplexity) },
  { title: 'Σ loss', numeric: true, cell: (r) => formatLoss(r.lossSum) },
  { title: 'Time', numeric: true, cell: (r) => formatSeconds(r.seconds) },
];

export class ComparePanel {
  private readonly chart: LossChart;
  private view: CompareView;
  private mode: LossMode = 'loss';

  constructor(
    private readonly app: HTMLElement,
    runs: readonly RunSnapshot[],
  ) {
    this.view = compareView(runs);
    const canvas = el('canvas', { id: 'loss-chart', role: 'img', 'aria-label': 'Reconstruction loss per layer, one series per run (the table lists each run)' });
    app.replaceChildren(
      el('header', { id: 'header' }, el('h1', {}, 'Compare runs')),
      el(
        'section',
        { id: 'chart-section', 'aria-label': 'Loss per layer' },
        el('div', { class: 'toolbar' }, toggle('Loss', LOSS_MODES, this.mode, (m) => this.setMode(m))),
        el('div', { class: 'chart-box' }, canvas),
      ),
      el(
        'section',
        { id: 'runs', 'aria-label': 'Runs' },
        el(
          'table',
          { id: 'compare-table', class: 'data' },
          el('caption', {}, 'Runs'),
          el('thead', {}, el('tr', {}, ...COLUMNS.map((c) => el('th', { scope: 'col', class: c.numeric ? 'num' : '' }, c.title)))),
          el('tbody'),
        ),
      ),
    );
    this.chart = new LossChart(canvas, readTheme());
    this.draw();
  }

  setRuns(runs: readonly RunSnapshot[]): void {
    this.view = compareView(runs);
    this.draw();
  }

  destroy(): void {
    this.chart.destroy();
  }

  themeChanged(): void {
    this.chart.setTheme(readTheme());
    this.drawChart();
  }

  private setMode(mode: LossMode): void {
    this.mode = mode;
    this.drawChart();
  }

  private draw(): void {
    const body = this.app.querySelector('#compare-table tbody');
    body?.replaceChildren(
      ...this.view.runs.map((r) => el('tr', { 'data-run': r.id }, ...COLUMNS.map((c) => el('td', { class: c.numeric ? 'num' : '' }, c.cell(r))))),
    );
    this.drawChart();
  }

  private drawChart(): void {
    const theme = readTheme();
    const datasets = this.view.runs.map((r, i) => ({
      label: r.label,
      color: seriesColor(theme, i),
      pointStyle: 'circle' as const,
      showLine: true,
      points: r.points(this.mode),
    }));
    this.chart.update({
      axis: this.view.axis,
      yTitle: Y_TITLE[this.mode],
      datasets,
      describe: (pt, ds) => [
        ds.label,
        `shape ${formatShape(pt.row.shape)} · sparsity ${formatPercent(pt.row.sparsity)}`,
        `loss ${formatLoss(pt.row.loss)} · relative ${formatLoss(pt.row.relLoss)}`,
        formatSeconds(pt.row.seconds),
      ],
    });
    this.app.dataset.layersCharted = String(new Set(datasets.flatMap((d) => d.points.map((p) => p.x))).size);
  }
}
