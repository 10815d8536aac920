// jsonc-parser on user text, bounded: its parser recurses once per nesting level (a stack overflow near 10 000
// levels) and walks the whole text, so a text too big or too deep for the editor (limits.ts) gets no tree and
// no location at all. Every tree of a config's text in the extension host comes from here.

import { getLocation, Location, Node, parseTree } from 'jsonc-parser';
import { tooHeavyForEditor } from '../../protocol/limits';

/** The tolerant tree of a config's text; undefined when it has no value or is too heavy to parse. */
export function configTree(text: string): Node | undefined {
  return tooHeavyForEditor(text) ? undefined : parseTree(text);
}

/** jsonc-parser's location of offset in text; undefined when the text is too heavy to parse. */
export function configLocation(text: string, offset: number): Location | undefined {
  return tooHeavyForEditor(text) ? undefined : getLocation(text, offset);
}
