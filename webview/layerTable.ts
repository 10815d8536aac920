// The sortable per-layer table (#layer-table): one row per pruned layer (one per expert group in an MoE block). Each header is a native button, so
// Tab reaches it and Enter/Space sorts; aria-sort tells screen readers the order.

import { el } from './dom';
import { formatLoss, formatPercent, formatSeconds, formatShape } from './format';
import { groupExpertRows, LayerRow, SortKey, SortOrder, sortRows } from './model';

interface Column {
  key: SortKey;
  title: string;
  numeric: boolean;
  cell: (r: LayerRow) => string;
}

const COLUMNS: Column[] = [
  { key: 'position', title: '#', numeric: true, cell: (r) => String(r.position + 1) },
  { key: 'layer', title: 'Layer', numeric: false, cell: (r) => r.layer },
  { key: 'kind', title: 'Kind', numeric: false, cell: (r) => r.kind },
  { key: 'shape', title: 'Shape', numeric: true, cell: (r) => formatShape(r.shape) },
  { key: 'sparsity', title: 'Sparsity', numeric: true, cell: (r) => formatPercent(r.sparsity) },
  { key: 'loss', title: 'Loss', numeric: true, cell: (r) => formatLoss(r.loss) },
  { key: 'relLoss', title: 'Relative loss', numeric: true, cell: (r) => formatLoss(r.relLoss) },
  { key: 'seconds', title: 'Time', numeric: true, cell: (r) => formatSeconds(r.seconds) },
];

export class LayerTable {
  readonly element: HTMLTableElement;
  private readonly body: HTMLTableSectionElement;
  private order: SortOrder = { key: 'position', descending: false };
  private rows: readonly LayerRow[] = [];
  /** How many of `rows` the table shows (experts grouped: fewer table rows than layers). */
  private drawn = 0;

  constructor() {
    const head = el('tr');
    for (const c of COLUMNS) {
      const b = el('button', { type: 'button', class: 'sort', 'data-sort': c.key }, c.title);
      b.addEventListener('click', () => this.sortBy(c.key));
      head.append(el('th', { scope: 'col', class: c.numeric ? 'num' : '' }, b));
    }
    this.body = el('tbody');
    this.element = el('table', { id: 'layer-table', class: 'data' }, el('caption', {}, 'Pruned layers'), el('thead', {}, head), this.body);
    this.markOrder();
  }

  /** Redraws when the rows changed (the same array grows as layers are pruned). */
  update(rows: readonly LayerRow[]): void {
    if (rows === this.rows && this.drawn === rows.length) return;
    this.rows = rows;
    this.drawn = rows.length;
    this.draw();
  }

  /** Same column again flips the direction; a new column starts ascending (Loss, Time: largest first). */
  sortBy(key: SortKey): void {
    const bigFirst = key === 'loss' || key === 'relLoss' || key === 'seconds';
    this.order = this.order.key === key ? { key, descending: !this.order.descending } : { key, descending: bigFirst };
    this.markOrder();
    this.draw();
  }

  private draw(): void {
    const trs = sortRows(groupExpertRows(this.rows), this.order).map((r) =>
      el('tr', { 'data-layer': r.layer }, ...COLUMNS.map((c) => el('td', { class: c.numeric ? 'num' : '', title: c.key === 'layer' ? r.notes.join('\n') : '' }, c.cell(r)))),
    );
    this.body.replaceChildren(...trs);
  }

  private markOrder(): void {
    this.element.querySelectorAll('th').forEach((th, i) => {
      const sorted = COLUMNS[i].key === this.order.key;
      th.setAttribute('aria-sort', sorted ? (this.order.descending ? 'descending' : 'ascending') : 'none');
    });
  }
}
