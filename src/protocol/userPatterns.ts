// The user's patterns over layer and node names (layer globs, "re:" expressions, blockPattern) compiled to RE2
// (re2js): matching time is linear in the name whatever the pattern, so no config can hang the backend or the
// editor. RE2 has no lookaround and no backreferences; such a pattern is refused with RE2's own reason.
// Pure TypeScript (no Node): the backend and the extension host share it.

import { RE2JS } from 're2js';
import { LIMITS } from './limits';

/** A compiled user pattern: `exec` finds the first match like RegExp.prototype.exec (index, [0], groups). */
export interface UserRegex {
  readonly source: string;
  /** Capture groups in the pattern. */
  readonly groups: number;
  test(s: string): boolean;
  exec(s: string): { index: number; 0: string; [group: number]: string | undefined } | null;
}

/** Compiles `source` as RE2; throws one line naming what RE2 refused. */
export function compileUserRegex(source: string): UserRegex {
  if (source.length > LIMITS.pattern) throw new Error(`is ${source.length} characters long; the limit for a pattern is ${LIMITS.pattern}`);
  let re: RE2JS;
  try {
    re = RE2JS.compile(source);
  } catch (e) {
    const why = (e as Error).message.replace(/^error parsing regexp: /, '');
    throw new Error(`not a valid regular expression: ${why} (RE2 syntax: no lookaround, no backreferences)`);
  }
  return {
    source,
    groups: re.groupCount(),
    test: (s) => re.test(s),
    exec: (s) => re.exec(s) as ReturnType<UserRegex['exec']>,
  };
}

/** A glob as a whole-name predicate: `*` any run of characters (`/` and `.` included), `?` one character. */
export function compileGlob(glob: string): (name: string) => boolean {
  if (glob.length > LIMITS.pattern) throw new Error(`is ${glob.length} characters long; the limit for a pattern is ${LIMITS.pattern}`);
  const source = glob.split(/(\*+|\?)/).map((part) => (part === '?' ? '.' : part.startsWith('*') ? '.*' : RE2JS.quote(part))).join('');
  const re = RE2JS.compile(`^(?:${source})$`);
  return (name) => re.test(name);
}
