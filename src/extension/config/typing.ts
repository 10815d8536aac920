// What jsonc-parser's tree leaves out about a config being typed: where its comments are, and which strings
// still lack their closing quote (the tree holds them as if closed).

import { printParseErrorCode, visit } from 'jsonc-parser';
import { tooHeavyForEditor } from '../../protocol/limits';

export interface Typing {
  comments: { offset: number; end: number; line: boolean }[];
  /** The offsets (opening quotes) of strings without a closing quote. */
  unclosed: Set<number>;
}

export function scanTyping(text: string): Typing {
  const out: Typing = { comments: [], unclosed: new Set() };
  if (tooHeavyForEditor(text)) return out; // jsonc-parser's visit recurses per nesting level: no work on a bomb
  visit(text, {
    onComment: (offset, length) => out.comments.push({ offset, end: offset + length, line: text.startsWith('//', offset) }),
    onError: (error, offset) => {
      if (printParseErrorCode(error) === 'UnexpectedEndOfString') out.unclosed.add(offset);
    },
  });
  return out;
}
