// The problems of a *.prune.json that VS Code's JSON language service cannot see (it checks the schema):
// paths that do not exist, layer patterns that match no layer of the model, the rules resolveConfig checks
// beyond the schema (N < M, regular expressions, calibration data for the methods that need it). Each lands
// on the exact range of the offending string. No vscode here: offsets in, offsets out.

import { ConfigError, parseConfigText, ResolvedConfig, resolveConfigLeniently, unmatchedLayerPatterns } from '../../protocol/config';
import { findNodeAtLocation, JSONPath, Node } from 'jsonc-parser';
import { heavyTextProblem } from '../../protocol/limits';
import { SchemaProblem } from '../../protocol/schema';
import { InspectInfo, patternTargets } from './layerInfo';
import { configTree } from './tree';
import { isPlaceholder } from './template';

export type Severity = 'error' | 'warning' | 'information';

export interface ConfigDiagnostic {
  /** Offsets into the text; for a string value, its contents (quotes excluded). */
  offset: number;
  end: number;
  message: string;
  severity: Severity;
  /** The JSON path it is about: `$.layers.include[1]`. */
  path: string;
}

/** What exists on disk (injected so the computation stays pure and testable). */
export type PathKind = 'file' | 'folder' | undefined;

export interface DiagnosticInputs {
  /** The config's text as in the editor (comments allowed). */
  text: string;
  /** Absolute folder of the config file: relative paths resolve against it (as resolveConfig does). */
  baseDir: string;
  kindOf: (absolutePath: string) => PathKind;
  /** The checkpoint's inspect output; `{ error }` when inspect failed; undefined while it is not known. */
  inspect?: InspectInfo | { error: string };
}

/**
 * Every problem found, in document order. A file that is not JSON, or breaks the schema, gets none: VS Code
 * reports those itself, and without a valid shape nothing can be resolved.
 */
export function configDiagnostics(inputs: DiagnosticInputs): ConfigDiagnostic[] {
  const { text, baseDir, kindOf, inspect } = inputs;
  const heavy = heavyTextProblem(text);
  // Not a config a person wrote: one problem, and no parsing, in the extension host's thread.
  if (heavy) return [{ offset: 0, end: 0, message: heavy.message, severity: 'error', path: '$' }];
  let raw: unknown;
  try {
    raw = parseConfigText(text);
  } catch (e) {
    return limitDiagnostics(e, undefined);
  }
  const tree = configTree(text);
  let resolved: { config: ResolvedConfig; problems: SchemaProblem[] };
  try {
    resolved = resolveConfigLeniently(raw, baseDir);
  } catch (e) {
    // Schema problems: VS Code's Problems list them. Size limits: only PruneKit knows them.
    if (e instanceof ConfigError) return limitDiagnostics(e, tree);
    throw e;
  }
  const { config, problems } = resolved;
  const out: ConfigDiagnostic[] = [];
  const add = (path: string, message: string, severity: Severity = 'error') => out.push({ ...rangeOf(tree, path), message, severity, path });

  for (const p of problems) add(p.path, p.message);

  // Paths. The checkpoint's own problems come from inspect, which finds the model as a run would.
  const ckptKind = kindOf(config.checkpoint);
  if (ckptKind === undefined) add('$.checkpoint', `checkpoint not found: ${config.checkpoint} does not exist`);
  else if (inspect && 'error' in inspect) add('$.checkpoint', inspect.error);
  // [JSON path, what it is, resolved path, as written]
  const data: [string, string, string, string][] = [];
  const written = raw as { calibration?: { path: string } | null; evaluation?: { path: string } | false };
  if (config.calibration && written.calibration) data.push(['$.calibration.path', 'calibration data', config.calibration.path, written.calibration.path]);
  if (config.evaluation && written.evaluation) data.push(['$.evaluation.path', 'evaluation data', config.evaluation.path, written.evaluation.path]);
  for (const [path, what, file, asWritten] of data) {
    const kind = kindOf(file);
    if (isPlaceholder(asWritten)) add(path, `placeholder: replace it with the ${what} to use (a .txt or .jsonl text, or token ids as .json), relative to this file`);
    else if (kind === undefined) add(path, `${what} not found: ${file} does not exist`);
    else if (kind === 'folder') add(path, `${what} must be a file (.txt, .jsonl or a .json of token ids), not the folder ${file}`);
  }
  const rawTokenizer = (raw as { tokenizer?: string | null }).tokenizer;
  if (typeof rawTokenizer === 'string') {
    const kind = kindOf(config.tokenizer);
    if (kind === undefined) add('$.tokenizer', `tokenizer not found: ${config.tokenizer} does not exist`);
    else if (kind === 'folder' && kindOf(`${config.tokenizer}/tokenizer.json`) !== 'file') add('$.tokenizer', `no tokenizer.json in the folder ${config.tokenizer}`);
  } else if (inspect && !('error' in inspect) && inspect.tokenizer === null) {
    const needsTokenizer = data.find(([, , file]) => !/\.json$/i.test(file));
    if (needsTokenizer) add(needsTokenizer[0], `${needsTokenizer[1]} is text, but there is no tokenizer.json beside the model: set "tokenizer" (or give token ids as a .json file)`, 'warning');
  }

  // The backend refuses an existing output folder unless overwrite is set (say it before the run does).
  if (!config.overwrite && kindOf(config.output) !== undefined) {
    const explicit = typeof (raw as { output?: unknown }).output === 'string';
    add(explicit ? '$.output' : '$.checkpoint', `${explicit ? 'the output' : 'the default output'} ${config.output} exists: the run will refuse to replace it; set "overwrite": true or another "output"`, 'warning');
  }

  // Layer patterns against the model's real layer names (skipped while a pattern is an invalid regex:
  // that problem is reported above, and the matcher would throw).
  if (inspect && !('error' in inspect) && !problems.some((p) => p.path.startsWith('$.layers'))) {
    const names = patternTargets(inspect, config.keepDense);
    for (const p of unmatchedLayerPatterns(config, names, inspect.skipped)) add(p.path, `${p.message}; layer names look like ${names[0] ?? '(none)'}`);
  }

  return out.sort((a, b) => a.offset - b.offset);
}

/** The problems of a ConfigError with code limit-exceeded (none for any other error). */
function limitDiagnostics(e: unknown, tree: Node | undefined): ConfigDiagnostic[] {
  if (!(e instanceof ConfigError) || e.code !== 'limit-exceeded') return [];
  return e.problems.map((p) => ({ ...rangeOf(tree, p.path), message: p.message, severity: 'error' as const, path: p.path }));
}

/** The range a JSON path's problem is shown on: a string's contents, another value, a key, or the nearest parent. */
export function rangeOf(tree: Node | undefined, path: string): { offset: number; end: number } {
  if (!tree) return { offset: 0, end: 0 };
  const segments = parseJsonPath(path);
  const node = findNodeAtLocation(tree, segments);
  if (node) return node.type === 'string' && node.length >= 2 ? { offset: node.offset + 1, end: node.offset + node.length - 1 } : { offset: node.offset, end: node.offset + node.length };
  const key = keyAt(tree, segments);
  if (key) return { offset: key.offset, end: key.offset + key.length };
  // A missing member: the opening brace (or bracket) of its nearest parent.
  for (let k = segments.length - 1; k >= 0; k--) {
    const parent = findNodeAtLocation(tree, segments.slice(0, k));
    if (parent) return { offset: parent.offset, end: parent.offset + 1 };
  }
  return { offset: 0, end: 0 };
}

/** The key of a property written without a value yet (`"sparsity":`). */
function keyAt(tree: Node, segments: JSONPath): Node | undefined {
  const parent = findNodeAtLocation(tree, segments.slice(0, -1));
  const name = segments[segments.length - 1];
  return parent?.type === 'object' ? parent.children?.find((p) => p.children?.[0].value === name)?.children?.[0] : undefined;
}

/** `$.layers.overrides[0].match` → ["layers", "overrides", 0, "match"] (the form schema.ts childPath writes). */
export function parseJsonPath(path: string): JSONPath {
  const out: JSONPath = [];
  const re = /\.([A-Za-z_$][A-Za-z0-9_$]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/gy;
  re.lastIndex = path.startsWith('$') ? 1 : 0;
  let m: RegExpExecArray | null;
  while (re.lastIndex < path.length && (m = re.exec(path))) {
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else out.push(JSON.parse(m[3]) as string);
  }
  return out;
}
