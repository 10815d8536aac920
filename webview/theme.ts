// Colours for the canvas, read from the VS Code theme's CSS variables (chart.js draws on a canvas, which CSS
// cannot style). Re-read when the theme changes (VS Code swaps the body's vscode-light/dark class).

import type { LayerFamily } from './model';

export interface Theme {
  foreground: string;
  muted: string;
  grid: string;
  /** Shading of every other block band. */
  band: string;
  fontFamily: string;
  fontSize: number;
  red: string;
  blue: string;
  green: string;
  yellow: string;
  orange: string;
  purple: string;
}

// Fallbacks: VS Code's Dark+ values, for a page without the theme (a browser test, a preview).
const FALLBACK: Record<string, string> = {
  '--vscode-editor-foreground': '#cccccc',
  '--vscode-descriptionForeground': '#9d9d9d',
  '--vscode-editorWidget-border': '#454545',
  '--vscode-editor-font-family': 'monospace',
  '--vscode-font-family': 'system-ui, sans-serif',
  '--vscode-font-size': '13px',
  '--vscode-charts-red': '#f14c4c',
  '--vscode-charts-blue': '#3794ff',
  '--vscode-charts-green': '#89d185',
  '--vscode-charts-yellow': '#cca700',
  '--vscode-charts-orange': '#d18616',
  '--vscode-charts-purple': '#b180d7',
  '--vscode-charts-lines': 'rgba(204, 204, 204, 0.5)',
};

export function readTheme(root: Element = document.documentElement): Theme {
  const style = getComputedStyle(root);
  const v = (name: string) => style.getPropertyValue(name).trim() || FALLBACK[name];
  const lines = v('--vscode-charts-lines');
  return {
    foreground: v('--vscode-editor-foreground'),
    muted: v('--vscode-descriptionForeground'),
    grid: v('--vscode-editorWidget-border'),
    band: withAlpha(lines, 0.08),
    fontFamily: v('--vscode-font-family'),
    fontSize: parseFloat(v('--vscode-font-size')) || 13,
    red: v('--vscode-charts-red'),
    blue: v('--vscode-charts-blue'),
    green: v('--vscode-charts-green'),
    yellow: v('--vscode-charts-yellow'),
    orange: v('--vscode-charts-orange'),
    purple: v('--vscode-charts-purple'),
  };
}

export function familyColor(t: Theme, family: LayerFamily): string {
  const byFamily: Record<LayerFamily, string> = { attention: t.blue, mlp: t.orange, fc: t.green, ssm: t.purple, head: t.red, other: t.yellow };
  return byFamily[family];
}

/** The n-th run's colour in the Compare panel. */
export function seriesColor(t: Theme, n: number): string {
  const cycle = [t.blue, t.orange, t.green, t.purple, t.red, t.yellow];
  return cycle[n % cycle.length];
}

/** Calls `onChange` when VS Code switches theme. */
export function watchTheme(onChange: () => void): void {
  new MutationObserver(onChange).observe(document.body, { attributes: true, attributeFilter: ['class'] });
}

/** A colour (#rgb, #rrggbb, rgb(), rgba()) at the given opacity; anything else is returned unchanged. */
export function withAlpha(color: string, alpha: number): string {
  const hex = /^#([0-9a-f]{3}|[0-9a-f]{6}|[0-9a-f]{8})$/i.exec(color);
  if (hex) {
    let h = hex[1];
    if (h.length === 3) h = [...h].map((c) => c + c).join('');
    const [r, g, b] = [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16));
    return `rgba(${r}, ${g}, ${b}, ${alpha})`;
  }
  const rgb = /^rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)/i.exec(color);
  if (rgb) return `rgba(${rgb[1]}, ${rgb[2]}, ${rgb[3]}, ${alpha})`;
  return color;
}
