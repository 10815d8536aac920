// A few DOM helpers. Text always goes in as text (never innerHTML): layer names and error messages come from
// files the user did not write.

type Child = Node | string | null | undefined | false;

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...present(children));
  return e;
}

/** The children that are there (conditional ones written `cond && el(...)` drop out). */
export function present(children: readonly Child[]): (Node | string)[] {
  return children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false);
}

/** The element of `root` that must exist (the panel built it). */
export function must<T extends Element = HTMLElement>(root: ParentNode, selector: string): T {
  const found = root.querySelector<T>(selector);
  if (!found) throw new Error(`panel element ${selector} missing`);
  return found;
}

/** A labelled value: `<div><dt>label</dt><dd data-field=field>…</dd></div>`. */
export function field(label: string, name: string): HTMLElement {
  return el('div', { class: 'field' }, el('dt', {}, label), el('dd', { 'data-field': name }, '—'));
}

export function setField(root: ParentNode, name: string, text: string): void {
  const dd = root.querySelector(`[data-field="${name}"]`);
  if (dd && dd.textContent !== text) dd.textContent = text;
}
