// The `*.prune.json` config: its TypeScript shape, and resolveConfig, which validates a parsed file against
// prune-config.schema.json (the single source of truth, also VS Code's), fills the schema's defaults, checks
// what a schema cannot say (N < M, regular expressions, calibration data for the methods that need it) and
// resolves paths against the config file's folder. Every problem names its JSON path:
// `$.calibration.nsamples: must be an integer >= 1 (got 0)`.
// No vscode: the backend and the extension host share it (both Node).

import * as path from 'node:path';
import schemaJson from './prune-config.schema.json';
import { ParseError, ParseErrorCode, printParseErrorCode, visit } from 'jsonc-parser';
import { binomialUpTo, heavyTextProblem, LIMITS, limitProblems } from './limits';
import {
  Allocation, DeviceName, MagnitudeGroup, METHOD_NEEDS, MethodName, NmMask, parsePattern, Pattern, patternSparsity, PatternString,
} from './pruning';
import { childPath, JsonSchema, SchemaProblem, validateSchema, withDefaults } from './schema';
import type { SweepConfig } from './sweep';
import { compileGlob, compileUserRegex } from './userPatterns';

export const PRUNE_CONFIG_SCHEMA = schemaJson as unknown as JsonSchema;

/** What VS Code's jsonValidation matches, and what the extension looks for. */
export const CONFIG_FILE_SUFFIX = '.prune.json';

// ---------------------------------------------------------------------------------------------------------
// The file as written (every field but checkpoint optional). Field meanings and defaults: the schema's
// descriptions. test/protocol.test.ts fails when these keys and the schema's properties differ.

export interface PruneConfig {
  $schema?: string;
  checkpoint: string;
  output?: string | null;
  variant?: string | null;
  tokenizer?: string | null;
  method?: MethodName;
  sparsity?: number;
  pattern?: PatternString;
  blockSize?: number;
  dampening?: number;
  nmMask?: NmMask;
  magnitudeGroup?: MagnitudeGroup;
  allocation?: Allocation;
  owl?: OwlConfig;
  refine?: RefineConfig;
  calibration?: CalibrationConfig | null;
  evaluation?: EvaluationConfig | false;
  layers?: LayersConfig;
  keepDense?: KeepDenseConfig;
  blockPattern?: string | null;
  device?: DeviceName;
  threads?: number;
  overwrite?: boolean;
  tokenCache?: boolean;
  /** Lists of values to run every combination of (a sweep: src/protocol/sweep.ts); never part of a resolved run. */
  sweep?: SweepConfig;
}

/** OWL's parameters (Yin et al. 2024): outlier threshold M and maximum deviation λ. */
export interface OwlConfig {
  outlierThreshold?: number;
  maxDeviation?: number;
}

/** APT's refinement: ADMM iterations after the one-shot mask (0: one-shot APT). */
export interface RefineConfig {
  iterations?: number;
}

export interface CalibrationConfig {
  path: string;
  nsamples?: number;
  seqlen?: number | null;
  seed?: number;
  skipTokens?: number;
}

export interface EvaluationConfig {
  path: string;
  seqlen?: number | null;
  maxWindows?: number | null;
}

export interface LayersConfig {
  include?: string[];
  exclude?: string[];
  overrides?: LayerOverride[];
}

/** Fields left out keep the top-level value. */
export interface LayerOverride {
  match: string;
  method?: MethodName;
  sparsity?: number;
  pattern?: PatternString;
}

export interface KeepDenseConfig {
  lmHead?: boolean;
  depthwiseConv?: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// The resolved form: every default filled, paths absolute. What run.started carries and the pipeline reads.
// null keeps the meaning the schema gives it ("from the model": calibration.seqlen, evaluation.seqlen; "all":
// evaluation.maxWindows; "detect": blockPattern). The pipeline fills the model-dependent ones before
// run.started, so that event's config has numbers there.

export interface ResolvedConfig {
  checkpoint: string;
  output: string;
  /** The repository variant (`model_fp16`), null: the only float one. */
  variant: string | null;
  tokenizer: string;
  method: MethodName;
  sparsity: number;
  pattern: PatternString;
  blockSize: number;
  dampening: number;
  nmMask: NmMask;
  magnitudeGroup: MagnitudeGroup;
  allocation: Allocation;
  owl: Required<OwlConfig>;
  refine: Required<RefineConfig>;
  /** null: no calibration data (only with magnitude everywhere). */
  calibration: ResolvedCalibration | null;
  evaluation: ResolvedEvaluation | false;
  layers: ResolvedLayers;
  keepDense: Required<KeepDenseConfig>;
  blockPattern: string | null;
  device: DeviceName;
  threads: number;
  overwrite: boolean;
  tokenCache: boolean;
}

export type ResolvedCalibration = Required<CalibrationConfig>;
export type ResolvedEvaluation = Required<EvaluationConfig>;
export type ResolvedLayers = Required<LayersConfig>;

/** A config that breaks the schema or its rules; `problems` name JSON paths, `message` lists them one a line.
 *  `code` is the run.failed code: `limit-exceeded` when a size limit (limits.ts) was hit. */
export class ConfigError extends Error {
  constructor(
    readonly problems: SchemaProblem[],
    readonly code: 'config-invalid' | 'limit-exceeded' = 'config-invalid',
  ) {
    super(problems.map((p) => `${p.path}: ${p.message}`).join('\n'));
    this.name = 'ConfigError';
  }
}

/**
 * Parses the text of a config file: JSON with `//` and `/* *\/` comments (VS Code edits *.prune.json as
 * jsonc); no trailing commas. A syntax error becomes a ConfigError at `$` with line and column.
 */
export function parseConfigText(text: string): unknown {
  // Size and depth first: jsonc-parser's parser is recursive, and a 100 MB string would cost minutes.
  const heavy = heavyTextProblem(text);
  if (heavy) throw new ConfigError([heavy], 'limit-exceeded');
  const { plain, error } = readJsonc(text);
  if (error) throw syntaxError(text, error.offset, humanize(printParseErrorCode(error.error)));
  // The value comes from JSON.parse, which keeps a "__proto__" key as a plain property the schema rejects
  // (jsonc-parser's parse assigns keys, making it the object's prototype).
  try {
    return JSON.parse(plain);
  } catch (e) {
    const at = /position (\d+)/.exec((e as Error).message);
    throw syntaxError(text, at ? Number(at[1]) : 0, (e as Error).message);
  }
}

/**
 * The text with every comment blanked to spaces (line breaks kept, so offsets, lines and columns stay; jsonc-parser's
 * stripComments shifts them in 3.3.1), and its first syntax error.
 */
export function readJsonc(text: string): { plain: string; error?: ParseError } {
  const parts: string[] = [];
  let last = 0;
  let error: ParseError | undefined;
  const onComment = (offset: number, length: number) => {
    parts.push(text.slice(last, offset), text.slice(offset, offset + length).replace(/[^\r\n]/g, ' '));
    last = offset + length;
  };
  const onError = (code: ParseErrorCode, offset: number, length: number) => {
    error ??= { error: code, offset, length };
  };
  visit(text, { onComment, onError }, { allowTrailingComma: false });
  parts.push(text.slice(last));
  return { plain: parts.join(''), error };
}

function syntaxError(text: string, offset: number, what: string): ConfigError {
  const before = text.slice(0, offset).split('\n');
  return new ConfigError([{ path: '$', message: `not valid JSON: ${what} (line ${before.length}, column ${before[before.length - 1].length + 1})` }]);
}

/** "PropertyNameExpected" → "property name expected". */
function humanize(code: string): string {
  return code.replace(/(?<=[a-z])(?=[A-Z])/g, ' ').toLowerCase();
}

/**
 * Validates a parsed config and returns it resolved. baseDir: the absolute folder of the config file
 * (relative paths resolve against it; the CLI passes its working directory when flags alone describe the run,
 * and absolute paths from flags pass through unchanged). Throws ConfigError listing every problem.
 */
export function resolveConfig(raw: unknown, baseDir: string): ResolvedConfig {
  const { config, problems } = resolveConfigLeniently(raw, baseDir);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/**
 * resolveConfig for the editor, which shows every problem at once: throws only when the schema is broken
 * (without a valid shape there is nothing to resolve); the rules a schema cannot say are returned as
 * problems beside the resolved config (its paths are right even then).
 */
export function resolveConfigLeniently(raw: unknown, baseDir: string): { config: ResolvedConfig; problems: SchemaProblem[] } {
  const limits = limitProblems(raw);
  if (limits.length > 0) throw new ConfigError(limits, 'limit-exceeded');
  const problems = validateSchema(PRUNE_CONFIG_SCHEMA, raw).map(explainRemoved);
  if (problems.length > 0) throw new ConfigError(problems);
  const filled = withDefaults(PRUNE_CONFIG_SCHEMA, raw) as Omit<ResolvedConfig, 'output' | 'tokenizer'> & {
    $schema?: string;
    sweep?: SweepConfig;
    output: string | null;
    tokenizer: string | null;
  };
  delete filled.$schema; // where an editor found the schema: not part of the run
  delete filled.sweep; // a sweep's points are runs; the sweep itself is not (src/backend/sweep/)

  const paths = pathsOf(baseDir);
  const resolve = (p: string) => paths.resolve(baseDir, paths === path.posix && !p.startsWith('/') ? p.replace(/\\/g, '/') : p);
  const checkpoint = resolve(filled.checkpoint);
  // A .onnx file is the model itself; anything else is the folder holding model.onnx.
  const isFile = /\.onnx$/i.test(checkpoint);
  // A repository's onnx/<variant>.onnx has its tokenizer at the repository's root.
  const fileDir = isFile ? paths.dirname(checkpoint) : checkpoint;
  const modelDir = isFile && /[\\/]onnx$/.test(fileDir) ? paths.dirname(fileDir) : fileDir;
  const config: ResolvedConfig = {
    ...filled,
    checkpoint,
    output: filled.output === null ? defaultOutput(paths, checkpoint, isFile, filled) : resolve(filled.output),
    tokenizer: filled.tokenizer === null ? paths.join(modelDir, 'tokenizer.json') : resolve(filled.tokenizer),
    calibration: filled.calibration && { ...filled.calibration, path: resolve(filled.calibration.path) },
    evaluation: filled.evaluation && { ...filled.evaluation, path: resolve(filled.evaluation.path) },
  };

  return { config, problems: ruleProblems(config, modelDir) };
}

/** APT's joint N:M mask tries all C(M, N) subsets of every group: refused past LIMITS.jointSubsets. */
function jointSearchProblems(c: ResolvedConfig): SchemaProblem[] {
  if (c.nmMask !== 'joint') return [];
  const uses: [string, MethodName, string][] = [
    [c.pattern, c.method, '$.pattern'],
    ...c.layers.overrides.map((o, i): [string, MethodName, string] => [o.pattern ?? c.pattern, o.method ?? c.method, `$.layers.overrides[${i}]${o.pattern ? '.pattern' : ''}`]),
  ];
  const out: SchemaProblem[] = [];
  for (const [text, method, path] of uses) {
    const nm = /^(\d+):(\d+)$/.exec(text);
    if (method !== 'apt' || !nm || Number(nm[1]) >= Number(nm[2]) || Number(nm[2]) > LIMITS.nmGroup) continue;
    if (binomialUpTo(Number(nm[2]), Number(nm[1]), LIMITS.jointSubsets) > LIMITS.jointSubsets) {
      out.push({ path, message: `"${text}": APT's joint N:M mask would try C(${nm[2]}, ${nm[1]}) subsets per group, more than the limit of ${LIMITS.jointSubsets}; set "nmMask": "saliency" or use a smaller M` });
    }
  }
  return out;
}

/** OWL spreads an unstructured sparsity and needs activation norms; refinement is APT's. */
function allocationProblems(c: ResolvedConfig): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  const methods = [c.method, ...c.layers.overrides.flatMap((o) => (o.method ? [o.method] : []))];
  if (c.allocation === 'owl') {
    if (c.pattern !== 'unstructured') out.push({ path: '$.allocation', message: `"owl" spreads an unstructured sparsity over the blocks; pattern "${c.pattern}" fixes N:M in every layer (use "uniform")` });
    if (c.calibration === null) out.push({ path: '$.allocation', message: '"owl" needs calibration data (it weighs each block\'s outliers of |W|·‖X‖); add "calibration"' });
    const hi = Math.max(c.sparsity, ...c.layers.overrides.flatMap((o) => (o.sparsity !== undefined ? [o.sparsity] : [])));
    const lo = Math.min(c.sparsity, ...c.layers.overrides.flatMap((o) => (o.sparsity !== undefined ? [o.sparsity] : [])));
    if (hi + 2 * c.owl.maxDeviation >= 1 || lo - 2 * c.owl.maxDeviation <= 0) {
      out.push({ path: '$.owl.maxDeviation', message: `${c.owl.maxDeviation} could move a block's sparsity out of (0, 1) around the targets ${lo}..${hi}: keep target ± 2·maxDeviation inside (0, 1)` });
    }
  }
  if (c.refine.iterations > 0 && !methods.includes('apt')) {
    out.push({ path: '$.refine.iterations', message: `refinement is APT's (method "${c.method}" here): set "method": "apt" or iterations 0` });
  }
  return out;
}

/** Keys earlier versions accepted: an old config that sets one is told why it went, not just "unknown property". */
const REMOVED_KEYS: Record<string, string> = {
  '$.keepDense.embedding': 'removed: the token embedding is a lookup table, not a linear layer, so it is never pruned (the flag did nothing); delete this key',
};

function explainRemoved(p: SchemaProblem): SchemaProblem {
  return Object.hasOwn(REMOVED_KEYS, p.path) ? { path: p.path, message: REMOVED_KEYS[p.path] } : p;
}

/**
 * The paths of the config's own system, told by its folder: "/…" is POSIX (where a relative path's backslashes
 * are separators too: a config written on Windows), "C:\…" or "\\server\share\…" Windows.
 */
export function pathsOf(baseDir: string): path.PlatformPath {
  return baseDir.startsWith('/') ? path.posix : path.win32;
}

/** `<folder>-apt-50` beside a model folder, `<name>-sparsegpt-2of4` beside a .onnx file. */
function defaultOutput(paths: path.PlatformPath, checkpoint: string, isFile: boolean, c: Pick<ResolvedConfig, 'method' | 'pattern' | 'sparsity'>): string {
  const tag = c.pattern === 'unstructured' ? `${Math.round(c.sparsity * 100)}` : c.pattern.replace(':', 'of');
  const stem = paths.basename(checkpoint, isFile ? paths.extname(checkpoint) : undefined);
  return paths.join(paths.dirname(checkpoint), `${stem}-${c.method}-${tag}`);
}

/** What the schema cannot express. */
function ruleProblems(c: ResolvedConfig, modelDir: string): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  const patternRule = (text: string, path: string) => {
    try {
      parsePattern(text, 0.5);
    } catch (e) {
      out.push({ path, message: (e as Error).message });
    }
  };
  const matcherRule = (pattern: string, path: string) => {
    try {
      layerMatcher(pattern);
    } catch (e) {
      out.push({ path, message: (e as Error).message });
    }
  };

  patternRule(c.pattern, '$.pattern');
  c.layers.include.forEach((p, i) => matcherRule(p, `$.layers.include[${i}]`));
  c.layers.exclude.forEach((p, i) => matcherRule(p, `$.layers.exclude[${i}]`));
  c.layers.overrides.forEach((o, i) => {
    const at = `$.layers.overrides[${i}]`;
    matcherRule(o.match, `${at}.match`);
    if (o.pattern !== undefined) patternRule(o.pattern, `${at}.pattern`);
  });

  if (c.blockPattern !== null) {
    try {
      if (compileUserRegex(c.blockPattern).groups < 1) out.push({ path: '$.blockPattern', message: `needs a capture group for the block index, e.g. "layers\\.(\\d+)\\." (got "${c.blockPattern}")` });
    } catch (e) {
      out.push({ path: '$.blockPattern', message: (e as Error).message });
    }
  }
  out.push(...jointSearchProblems(c), ...allocationProblems(c));

  if (c.calibration === null) {
    const users: [MethodName, string][] = [[c.method, '$.method'], ...c.layers.overrides.flatMap((o, i): [MethodName, string][] => (o.method ? [[o.method, `$.layers.overrides[${i}].method`]] : []))];
    const needy = users.find(([m]) => METHOD_NEEDS[m] !== 'none');
    if (needy) {
      out.push({ path: '$.calibration', message: `is required: method "${needy[0]}" (${needy[1]}) needs calibration data; add e.g. {"path": "calibration.txt"}` });
    }
  }

  if (c.output === c.checkpoint || c.output === modelDir) {
    out.push({ path: '$.output', message: `must be a new folder, not the input model's (${c.output})` });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Layer selection: which layers a config prunes, and how. Shared so the editor can preview exactly what the
// backend will do. keepDense (LM head, depthwise convs) needs the graph and is applied by the pipeline
// before this: the names given here are those keepDense leaves prunable.

/**
 * A layer-name pattern as a predicate: "re:<regex>" (RE2 syntax, linear-time: userPatterns.ts) is searched in the name; anything else is a glob matched
 * against the whole name (`*` any run of characters, `/` and `.` included; `?` one character).
 * Throws on an invalid regular expression.
 */
export function layerMatcher(pattern: string): (name: string) => boolean {
  if (pattern.startsWith('re:')) {
    const re = compileUserRegex(pattern.slice(3));
    return (name) => re.test(name);
  }
  return compileGlob(pattern);
}

/** How one layer is pruned: the method, the pattern and the fraction of zeros it asks for (N/M for N:M). */
export interface LayerTarget {
  method: MethodName;
  pattern: Pattern;
  sparsity: number;
}

/**
 * include, exclude and overrides of a resolved config as one function of the layer name: null for a layer
 * left dense, else its target. Overrides apply in order, later entries winning for the fields they set.
 */
export function layerSelector(c: ResolvedConfig): (name: string) => LayerTarget | null {
  const include = c.layers.include.map(layerMatcher);
  const exclude = c.layers.exclude.map(layerMatcher);
  const overrides = c.layers.overrides.map((o) => ({ o, matches: layerMatcher(o.match) }));
  return (name) => {
    if (!include.some((m) => m(name)) || exclude.some((m) => m(name))) return null;
    let { method, sparsity, pattern } = c;
    for (const { o, matches } of overrides) {
      if (!matches(name)) continue;
      method = o.method ?? method;
      sparsity = o.sparsity ?? sparsity;
      pattern = o.pattern ?? pattern;
    }
    const p = parsePattern(pattern, sparsity);
    return { method, pattern: p, sparsity: patternSparsity(p) };
  };
}

/** A layer keepDense leaves dense: its name and the keepDense flag that, set to false, makes it prunable. */
export interface KeptDenseLayer {
  name: string;
  keptDenseBy?: keyof KeepDenseConfig;
}

/**
 * The include, exclude and override patterns that match none of the given layer names, with their JSON
 * paths (the pipeline reports them as errors: a pattern matching nothing is almost always a typo). A pattern
 * that matches only layers keepDense leaves dense says which flag releases them.
 */
export function unmatchedLayerPatterns(c: ResolvedConfig, names: readonly string[], keptDense: readonly KeptDenseLayer[] = []): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  const test = (pattern: string, path: string) => {
    const m = layerMatcher(pattern);
    if (names.some(m)) return;
    const held = keptDense.find((l) => l.keptDenseBy && m(l.name));
    const why = held ? `: ${held.name} is left dense by keepDense.${held.keptDenseBy} (set it to false to prune it)` : ' (run `prunekit inspect` for their names)';
    out.push({ path, message: `"${pattern}" matches no prunable layer${why}` });
  };
  c.layers.include.forEach((p, i) => test(p, childPath('$.layers.include', i)));
  c.layers.exclude.forEach((p, i) => test(p, childPath('$.layers.exclude', i)));
  c.layers.overrides.forEach((o, i) => test(o.match, `${childPath('$.layers.overrides', i)}.match`));
  return out;
}
