// The per-layer loss chart (both panels): x = position on the layer axis, y = loss on a log scale, every other
// block shaded and named on the x axis. chart.js registers only the pieces used here, to keep the bundle small.

import { Chart, Legend, LinearScale, LineElement, LogarithmicScale, Plugin, PointElement, PointStyle, ScatterController, Tooltip } from 'chart.js';
import { formatLoss, formatPercent } from './format';
import type { BlockBand, ChartPoint, LayerAxis, LossMode } from './model';
import { Theme, withAlpha } from './theme';

Chart.register(ScatterController, PointElement, LineElement, LinearScale, LogarithmicScale, Tooltip, Legend);

/** The absolute/relative toggle's choices, and the y axis title of each. */
export const LOSS_MODES = [
  { value: 'loss' as const, label: 'Absolute' },
  { value: 'relLoss' as const, label: 'Relative' },
];

export const Y_TITLE: Record<LossMode, string> = {
  loss: 'reconstruction loss ½·tr(ΔW H ΔWᵀ)',
  relLoss: 'relative loss (÷ ½·tr(W H Wᵀ))',
};

export interface LossDataset {
  label: string;
  color: string;
  pointStyle: PointStyle;
  /** Join the points (the Compare panel's runs); the run panel shows points alone. */
  showLine: boolean;
  /** 'sparsity': drawn against the right-hand axis (0–100 %), not the loss axis. */
  axis?: 'sparsity';
  points: ChartPoint[];
}

export interface LossChartInput {
  axis: LayerAxis;
  datasets: LossDataset[];
  yTitle: string;
  /** Tooltip body for one point. */
  describe: (p: ChartPoint, dataset: LossDataset) => string[];
}

/** What every chart of the panels shares: drawn at once, sized by its box, fed parsed {x, y} points. */
export const CHART_BASE_OPTIONS = { animation: false, responsive: true, maintainAspectRatio: false, parsing: false } as const;

/** Colours a chart's axes, ticks and legend from the theme (chart.js draws on a canvas, which CSS cannot style). */
export function applyChartTheme(chart: Chart<'scatter'>, t: Theme): void {
  Chart.defaults.color = t.foreground;
  Chart.defaults.borderColor = t.grid;
  Chart.defaults.font.family = t.fontFamily;
  Chart.defaults.font.size = t.fontSize;
  const scales = chart.options.scales!;
  for (const axis of Object.values(scales)) { // x, y and any second axis (the run panel's sparsity)
    if (!axis) continue;
    axis.ticks!.color = t.muted;
    axis.grid!.color = withAlpha(t.grid, 0.6);
    const title = (axis as { title?: { color?: string } }).title;
    if (title) title.color = t.muted;
  }
  chart.options.plugins!.legend!.labels!.color = t.foreground;
}

/** The canvas carries its chart as `chart`, so tests (and devtools) read exactly what is drawn. */
export type ChartCanvas = HTMLCanvasElement & { chart?: Chart<'scatter'> };

export class LossChart {
  private readonly chart: Chart<'scatter'>;
  private input: LossChartInput | null = null;
  private bands: BlockBand[] = [];

  constructor(
    canvas: ChartCanvas,
    private theme: Theme,
  ) {
    this.chart = new Chart(canvas, {
      type: 'scatter',
      data: { datasets: [] },
      options: {
        ...CHART_BASE_OPTIONS,
        normalized: true,
        interaction: { mode: 'nearest', intersect: false },
        scales: {
          x: {
            type: 'linear',
            offset: false,
            grid: { display: false },
            // Ticks at block centres, labelled with the block's name (or layer names when there are no blocks).
            afterBuildTicks: (scale) => {
              const at = this.bands.length > 0 ? this.bands.map((b) => (b.from + b.to) / 2) : (this.input?.axis.layers ?? []).map((_, i) => i);
              scale.ticks = at.map((value) => ({ value }));
            },
            ticks: { autoSkip: true, maxRotation: 0, callback: (value) => this.tickLabel(Number(value)) },
          },
          y: {
            type: 'logarithmic',
            title: { display: true, text: '' },
            // Label 1, 2 and 5 of each decade only: the log scale's other ticks crowd each other.
            ticks: { callback: (value) => (isOneTwoFive(Number(value)) ? formatLoss(Number(value)) : '') },
          },
          sparsity: {
            type: 'linear',
            position: 'right',
            display: false,
            min: 0,
            max: 1,
            title: { display: true, text: 'sparsity' },
            grid: { drawOnChartArea: false },
            ticks: { callback: (value) => formatPercent(Number(value), 0) },
          },
        },
        plugins: {
          legend: { position: 'bottom', labels: { usePointStyle: true } },
          tooltip: {
            callbacks: {
              title: (items) => (items[0] ? this.pointAt(items[0].datasetIndex, items[0].dataIndex)?.row.layer ?? '' : ''),
              label: (item) => {
                const ds = this.input?.datasets[item.datasetIndex];
                const p = this.pointAt(item.datasetIndex, item.dataIndex);
                return ds && p ? this.input!.describe(p, ds) : '';
              },
            },
          },
        },
      },
      plugins: [this.blockBands()],
    });
    Object.defineProperty(canvas, 'chart', { value: this.chart, configurable: true });
    this.applyTheme(theme);
  }

  update(input: LossChartInput): void {
    this.input = input;
    this.bands = input.axis.blocks();
    const n = input.axis.length;
    const x = this.chart.options.scales!.x!;
    x.min = -0.5;
    x.max = Math.max(0.5, n - 0.5);
    const y = this.chart.options.scales!.y as { min?: number; max?: number; title: { text: string } };
    y.title.text = input.yTitle;
    // A margin (in log space) so the lowest and highest points are not drawn on the chart's edge.
    const ys = input.datasets.flatMap((d) => (d.axis === 'sparsity' ? [] : d.points.map((p) => p.y)));
    this.chart.options.scales!.sparsity!.display = input.datasets.some((d) => d.axis === 'sparsity');
    y.min = ys.length > 0 ? Math.min(...ys) / 1.6 : undefined;
    y.max = ys.length > 0 ? Math.max(...ys) * 1.6 : undefined;
    this.chart.data.datasets = input.datasets.map((d) => ({
      label: d.label,
      data: d.points.map((p) => ({ x: p.x, y: p.y })),
      yAxisID: d.axis ?? 'y',
      showLine: d.showLine,
      borderColor: d.color,
      backgroundColor: withAlpha(d.color, 0.75),
      pointStyle: d.pointStyle,
      pointRadius: 4,
      pointHoverRadius: 6,
      borderWidth: d.showLine ? 1.5 : 1,
    }));
    this.chart.update('none');
  }

  setTheme(theme: Theme): void {
    this.applyTheme(theme);
    this.chart.update('none');
  }

  destroy(): void {
    this.chart.destroy();
  }

  private applyTheme(t: Theme): void {
    this.theme = t;
    applyChartTheme(this.chart, t);
  }

  private pointAt(datasetIndex: number, index: number): ChartPoint | undefined {
    return this.input?.datasets[datasetIndex]?.points[index];
  }

  private tickLabel(value: number): string {
    const band = this.bands.find((b) => (b.from + b.to) / 2 === value);
    if (band) return band.name;
    return this.input?.axis.layers[value]?.name ?? '';
  }

  /** Shades every other block and draws a line between blocks, behind the points. */
  private blockBands(): Plugin<'scatter'> {
    return {
      id: 'prunekitBlockBands',
      beforeDatasetsDraw: (chart) => {
        const { ctx, chartArea: area, scales } = chart;
        const x = scales.x;
        ctx.save();
        this.bands.forEach((b, i) => {
          const left = Math.max(area.left, x.getPixelForValue(b.from - 0.5));
          const right = Math.min(area.right, x.getPixelForValue(b.to + 0.5));
          if (i % 2 === 0) {
            ctx.fillStyle = this.theme.band;
            ctx.fillRect(left, area.top, right - left, area.bottom - area.top);
          }
          if (i > 0) {
            ctx.strokeStyle = withAlpha(this.theme.grid, 0.9);
            ctx.beginPath();
            ctx.moveTo(left, area.top);
            ctx.lineTo(left, area.bottom);
            ctx.stroke();
          }
        });
        ctx.restore();
      },
    };
  }
}

function isOneTwoFive(v: number): boolean {
  if (!(v > 0)) return false;
  const mantissa = v / 10 ** Math.floor(Math.log10(v) + 1e-9);
  return [1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-6);
}
