// File paths without node:path, so the config resolver runs in the webview too. POSIX paths ("/a/b") and
// Windows paths ("C:\a\b", "\\server\share\a") are told apart by their root; a relative path takes the
// separator of the folder it is resolved against.

interface Parsed {
  /** "/" , "C:\" or "\\server\share\" ("" for a relative path). */
  root: string;
  sep: '/' | '\\';
  segments: string[];
}

function parse(p: string): Parsed {
  const unc = /^\\\\[^\\/]+[\\/][^\\/]+/.exec(p);
  if (unc) return { root: unc[0].replace(/\//g, '\\') + '\\', sep: '\\', segments: split(p.slice(unc[0].length), true) };
  const drive = /^[A-Za-z]:[\\/]/.exec(p);
  if (drive) return { root: drive[0].slice(0, 2) + '\\', sep: '\\', segments: split(p.slice(3), true) };
  if (p.startsWith('/')) return { root: '/', sep: '/', segments: split(p.slice(1), false) };
  return { root: '', sep: '/', segments: split(p, true) };
}

function split(rest: string, backslashToo: boolean): string[] {
  return rest.split(backslashToo ? /[\\/]+/ : /\/+/).filter((s) => s !== '');
}

/** "." and ".." removed; ".." never climbs above the root. */
function normalize(segments: string[], rooted: boolean): string[] {
  const out: string[] = [];
  for (const s of segments) {
    if (s === '.') continue;
    if (s === '..' && out.length > 0 && out[out.length - 1] !== '..') out.pop();
    else if (s === '..' && rooted) continue;
    else out.push(s);
  }
  return out;
}

export function isAbsolutePath(p: string): boolean {
  return parse(p).root !== '';
}

/** p against baseDir (an absolute folder) unless p is absolute already; the result is normalized. */
export function resolvePath(baseDir: string, p: string): string {
  const target = parse(p);
  if (target.root) return target.root + normalize(target.segments, true).join(target.sep);
  const base = parse(baseDir);
  return base.root + normalize([...base.segments, ...target.segments], base.root !== '').join(base.sep);
}

/** The folder holding p ("/a/b/c.onnx" → "/a/b"); a root stays itself. */
export function dirnamePath(p: string): string {
  const { root, sep, segments } = parse(p);
  return root + segments.slice(0, -1).join(sep) || '.';
}

/** The last segment of p ("/a/b/c.onnx" → "c.onnx"). */
export function basenamePath(p: string): string {
  const { segments } = parse(p);
  return segments[segments.length - 1] ?? '';
}

/** A child of folder dir. */
export function joinPath(dir: string, name: string): string {
  return resolvePath(dir, name);
}
