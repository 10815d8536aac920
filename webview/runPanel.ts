// The run panel: header, progress, ending (failed/cancelled/interrupted), live loss chart, summary, warnings,
// layer table. Built once; draw() brings it up to date with the model (cheap: text and the chart's data).

import { el, field, must, present, setField } from './dom';
import { formatBytes, formatCount, formatLoss, formatPercent, formatPerplexity, formatSeconds, formatShape } from './format';
import { LayerTable } from './layerTable';
import { LOSS_MODES, LossChart, Y_TITLE } from './lossChart';
import type { PointStyle } from 'chart.js';
import { deviceLabel } from '../src/protocol/progress';
import { LayerKind, LossMode, RunModel } from './model';
import { familyColor, readTheme } from './theme';
import { button, setDisabled, toggle } from './toolkit';

export interface RunActions {
  cancel(): void;
  revealOutput(): void;
  openReport(): void;
}

// Colour tells the family (attention, MLP, …); the shape tells the layer within it.
const KIND_SHAPE: Record<LayerKind, PointStyle> = {
  q: 'circle',
  k: 'triangle',
  v: 'rect',
  qkv: 'rectRounded',
  o: 'rectRot',
  gate: 'circle',
  up: 'triangle',
  gate_up: 'rect',
  down: 'rectRot',
  fc1: 'circle',
  fc2: 'rectRot',
  in_proj: 'circle',
  conv1d: 'rect',
  x_proj: 'triangle',
  dt_proj: 'crossRot',
  out_proj: 'rectRot',
  lm_head: 'star',
  other: 'cross',
};

export class RunPanel {
  private readonly chart: LossChart;
  private readonly table = new LayerTable();
  private mode: LossMode = 'loss';
  private cancelRequested = false;
  private readonly cancelButton: HTMLElement;

  constructor(
    private readonly app: HTMLElement,
    private model: RunModel,
    actions: RunActions,
  ) {
    this.cancelButton = button('Cancel', {
      action: 'cancel',
      title: 'Stop the run (the input is left untouched and no output is written)',
      onClick: () => {
        this.cancelRequested = true;
        setDisabled(this.cancelButton, true);
        this.cancelButton.textContent = 'Cancelling…';
        actions.cancel();
      },
    });
    const canvas = el('canvas', { id: 'loss-chart', role: 'img', 'aria-label': 'Reconstruction loss per layer (the table below lists the same values)' });
    app.replaceChildren(
      el(
        'header',
        { id: 'header' },
        el('h1', {}, el('span', { 'data-field': 'label' }), ' ', el('span', { class: 'status', 'data-field': 'status' })),
        el('dl', { class: 'fields' }, field('Model', 'model'), field('Method', 'method'), field('Pattern', 'pattern'), field('Sparsity', 'sparsity'), field('Device', 'device')),
      ),
      el(
        'section',
        { id: 'progress', 'aria-label': 'Progress' },
        el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' }, el('div', { class: 'fill' })),
        el('div', { class: 'progress-text' }, el('span', { 'data-field': 'counts' }), el('span', { 'data-field': 'phase' }), el('span', { 'data-field': 'eta' }), this.cancelButton),
      ),
      el('section', { id: 'ending', role: 'alert', hidden: '' }),
      el(
        'section',
        { id: 'chart-section', 'aria-label': 'Loss per layer' },
        el('div', { class: 'toolbar' }, toggle('Loss', LOSS_MODES, this.mode, (m) => this.setMode(m))),
        el('div', { class: 'chart-box' }, canvas),
      ),
      el(
        'section',
        { id: 'summary', 'aria-label': 'Summary', hidden: '' },
        el('h2', {}, 'Summary'),
        el(
          'dl',
          { class: 'fields' },
          field('Dense perplexity', 'densePerplexity'),
          field('Pruned perplexity', 'prunedPerplexity'),
          field('Time', 'seconds'),
          field('Layers', 'layers'),
          field('Blocks', 'blocks'),
          field('Zeros / weights', 'zeros'),
          field('Sparsity of pruned layers', 'layerSparsity'),
          field('Sparsity of the model', 'modelSparsity'),
          field('Σ loss', 'lossSum'),
          field('Peak memory', 'peakRss'),
        ),
        el(
          'div',
          { class: 'output' },
          el('span', {}, 'Output: '),
          el('code', { 'data-field': 'output' }),
          button('Reveal', { action: 'revealOutput', title: 'Show the output folder', onClick: () => actions.revealOutput() }),
          button('Open report', { action: 'openReport', title: 'Open prune-report.json', onClick: () => actions.openReport() }),
        ),
      ),
      el('section', { id: 'warnings', 'aria-label': 'Warnings', hidden: '' }, el('h2', {}, 'Warnings'), el('ul')),
      el('section', { id: 'layers', 'aria-label': 'Layers' }, this.table.element),
    );
    this.chart = new LossChart(canvas, readTheme());
    this.draw();
  }

  /** Draw another run in the same page (run.reset for a different run). */
  setModel(model: RunModel): void {
    this.model = model;
    this.cancelRequested = false;
    this.cancelButton.textContent = 'Cancel';
    setDisabled(this.cancelButton, false);
    this.draw();
  }

  destroy(): void {
    this.chart.destroy();
  }

  themeChanged(): void {
    this.chart.setTheme(readTheme());
    this.drawChart();
  }

  draw(): void {
    const m = this.model;
    const p = m.progress;
    setField(this.app, 'label', m.label);
    setField(this.app, 'status', p.status);
    this.app.dataset.status = p.status;
    setField(this.app, 'model', p.model ? basename(p.model) : '—');
    setField(this.app, 'method', p.method ?? '—');
    setField(this.app, 'pattern', p.pattern ?? '—');
    setField(this.app, 'sparsity', p.sparsity === null ? '—' : formatPercent(p.sparsity, 1));
    setField(this.app, 'device', deviceLabel(p) ?? '—');
    must(this.app, '#header [data-field="model"]').title = p.model ?? '';

    const progress = must(this.app, '#progress');
    progress.dataset.layersDone = String(p.layersDone);
    progress.dataset.layersTotal = String(p.layersTotal);
    const percent = Math.round(p.fraction * 1000) / 10;
    must(progress, '.fill').style.width = `${percent}%`;
    const bar = must(progress, '.bar');
    bar.setAttribute('aria-valuenow', String(percent));
    bar.setAttribute('aria-valuetext', `${p.layersDone} of ${p.layersTotal} layers`);
    setField(progress, 'counts', `${p.layersDone} / ${p.layersTotal} layers · ${p.blocksDone} / ${p.blocksTotal} blocks`);
    setField(progress, 'phase', p.phase);
    setField(progress, 'eta', p.etaSeconds === null ? '' : `ETA ${formatSeconds(p.etaSeconds)}`);
    this.cancelButton.hidden = p.status !== 'running';
    if (p.status === 'running' && !this.cancelRequested) setDisabled(this.cancelButton, false);

    this.drawEnding();
    this.drawSummary();
    this.drawWarnings();
    this.drawChart();
    this.table.update(m.rows);
  }

  private setMode(mode: LossMode): void {
    this.mode = mode;
    this.drawChart();
  }

  private drawChart(): void {
    const theme = readTheme();
    const sparsity = this.model.sparsitySeries();
    this.chart.update({
      axis: this.model.axis,
      yTitle: Y_TITLE[this.mode],
      datasets: [
        ...this.model.series(this.mode).map((s) => ({
          label: s.kind,
          color: familyColor(theme, s.family),
          pointStyle: KIND_SHAPE[s.kind],
          showLine: false,
          points: s.points,
        })),
        ...(sparsity ? [{ label: 'sparsity', color: theme.muted, pointStyle: 'dash' as const, showLine: true, points: sparsity, axis: 'sparsity' as const }] : []),
      ],
      describe: (pt) => [
        `${pt.row.kind} · ${pt.row.blockName ?? 'outside blocks'}`,
        `shape ${formatShape(pt.row.shape)} · sparsity ${formatPercent(pt.row.sparsity)}`,
        `loss ${formatLoss(pt.row.loss)} · relative ${formatLoss(pt.row.relLoss)}`,
        `${formatSeconds(pt.row.seconds)}`,
      ],
    });
    this.app.dataset.layersCharted = String(this.model.charted(this.mode));
  }

  private drawEnding(): void {
    const section = must(this.app, '#ending');
    const ending = this.model.ending();
    section.hidden = ending === null;
    if (ending === null) return section.replaceChildren();
    section.dataset.ending = ending.kind;
    if (ending.kind === 'failed') {
      section.replaceChildren(
        ...present([
        el('h2', {}, 'Run failed ', el('code', { 'data-field': 'errorCode' }, ending.code)),
        el('p', { 'data-field': 'errorMessage' }, ending.message),
        ending.where.length > 0 && el('p', { class: 'where' }, ending.where.join(' · ')),
        ending.problems.length > 0 && el('ul', { class: 'problems' }, ...ending.problems.map((pr) => el('li', {}, el('code', {}, pr.jsonPath), ' ', pr.message))),
        ending.hint !== undefined && el('p', { class: 'hint', 'data-field': 'errorHint' }, ending.hint),
        ]),
      );
    } else if (ending.kind === 'cancelled') {
      section.replaceChildren(
        el('h2', {}, 'Run cancelled'),
        el('p', {}, `Stopped${ending.signal ? ` by ${ending.signal}` : ''} after ${formatSeconds(ending.seconds)}; ${ending.lastLayer ? `last layer pruned: ${ending.lastLayer}` : 'no layer was pruned'}. No output was written.`),
      );
    } else {
      section.replaceChildren(el('h2', {}, 'Run interrupted'), el('p', { 'data-field': 'errorMessage' }, ending.message), el('p', { class: 'hint' }, 'The backend stopped without finishing; no output was written. Run the config again to retry.'));
    }
  }

  private drawSummary(): void {
    const section = must(this.app, '#summary');
    const s = this.model.summary();
    const t = s.totals;
    section.hidden = s.densePerplexity === null && t === null;
    setField(section, 'densePerplexity', formatPerplexity(s.densePerplexity));
    setField(section, 'prunedPerplexity', formatPerplexity(s.prunedPerplexity));
    setField(section, 'seconds', formatSeconds(s.seconds));
    setField(section, 'layers', t ? formatCount(t.layers) : '—');
    setField(section, 'blocks', t ? formatCount(t.blocks) : '—');
    setField(section, 'zeros', t ? `${formatCount(t.zeros)} / ${formatCount(t.parameters)}` : '—');
    setField(section, 'layerSparsity', t ? formatPercent(t.sparsity) : '—');
    setField(section, 'modelSparsity', t ? formatPercent(t.modelSparsity) : '—');
    setField(section, 'lossSum', formatLoss(s.lossSum));
    setField(section, 'peakRss', t ? formatBytes(t.peakRssBytes) : '—');
    setField(section, 'output', s.output ?? '—');
    must(section, '.output').hidden = s.output === null;
  }

  private drawWarnings(): void {
    const section = must(this.app, '#warnings');
    const list = must(section, 'ul');
    const warnings = this.model.warnings;
    section.hidden = warnings.length === 0;
    if (list.children.length === warnings.length) return;
    list.replaceChildren(
      ...warnings.map((w) => el('li', { 'data-code': w.code }, el('code', {}, w.code), ' ', w.message, w.layer ? ` (${w.layer})` : '', w.file ? ` (${w.file})` : '', w.jsonPath ? ` (${w.jsonPath})` : '')),
    );
  }
}

/** The last segment of a POSIX or Windows path (C:\m\model.onnx → model.onnx): all the webview needs of paths. */
function basename(p: string): string {
  return p.split(/[\\/]/).filter((s) => s !== '').pop() ?? '';
}
