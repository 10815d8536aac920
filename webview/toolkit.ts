// The only module that knows @vscode/webview-ui-toolkit. The toolkit is archived upstream, so the panels use
// these few helpers instead of its elements: swapping it for plain elements (or another library) means
// rewriting this file alone.

import { provideVSCodeDesignSystem, vsCodeButton, vsCodeRadio, vsCodeRadioGroup } from '@vscode/webview-ui-toolkit';

let registered = false;

/** Registers the toolkit's custom elements once (they read the VS Code theme's CSS variables). */
export function registerToolkit(): void {
  if (registered) return;
  provideVSCodeDesignSystem().register(vsCodeButton(), vsCodeRadio(), vsCodeRadioGroup());
  registered = true;
}

export interface ButtonOptions {
  /** Primary for the main action of a section, secondary otherwise. */
  appearance?: 'primary' | 'secondary';
  /** Tooltip and accessible description. */
  title?: string;
  /** `data-action`, a stable hook for tests and styles. */
  action?: string;
  onClick: () => void;
}

export function button(label: string, options: ButtonOptions): HTMLElement {
  const b = document.createElement('vscode-button');
  b.textContent = label;
  b.setAttribute('appearance', options.appearance ?? 'secondary');
  if (options.title !== undefined) b.title = options.title;
  if (options.action !== undefined) b.dataset.action = options.action;
  b.addEventListener('click', () => {
    if (!isDisabled(b)) options.onClick();
  });
  return b;
}

export function setDisabled(control: HTMLElement, disabled: boolean): void {
  control.toggleAttribute('disabled', disabled);
}

function isDisabled(control: HTMLElement): boolean {
  return control.hasAttribute('disabled');
}

export interface ToggleOption<T extends string> {
  value: T;
  label: string;
}

/** A choice of one among a few (radio group: arrow keys move, the choice follows focus). */
export function toggle<T extends string>(label: string, options: readonly ToggleOption<T>[], initial: T, onChange: (value: T) => void): HTMLElement {
  const group = document.createElement('vscode-radio-group');
  group.setAttribute('orientation', 'horizontal');
  const caption = document.createElement('label');
  caption.slot = 'label';
  caption.textContent = label;
  group.append(caption);
  for (const o of options) {
    const radio = document.createElement('vscode-radio');
    radio.setAttribute('value', o.value);
    radio.textContent = o.label;
    if (o.value === initial) radio.setAttribute('checked', '');
    group.append(radio);
  }
  group.addEventListener('change', () => {
    const value = (group as HTMLElement & { value?: string }).value;
    const chosen = options.find((o) => o.value === value);
    if (chosen) onChange(chosen.value);
  });
  return group;
}
