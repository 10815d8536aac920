// A config's `sweep` as a list of points: every combination of the listed values, in the order the keys are written,
// each point a resolved config (validated as any config is, its problems named at `$.sweep.<key>[i]`) writing into
// its own folder under the sweep folder. Points that would be the same run (an N:M pattern ignores sparsity) are kept once.

import * as path from 'node:path';
import { ConfigError, PRUNE_CONFIG_SCHEMA, resolveConfig, ResolvedConfig } from '../../protocol/config';
import { parsePattern, patternSparsity, PatternString } from '../../protocol/pruning';
import { childPath, JsonSchema, SchemaProblem } from '../../protocol/schema';
import { SlurmOptions, SWEEP_SETTINGS, SweepConfig, SweepExecutor } from '../../protocol/sweep';

/** Settings that name the run's inputs, outputs or machine, or are objects: not a point's choice. */
const NOT_SWEPT = new Set(['$schema', 'checkpoint', 'variant', 'tokenizer', 'output', 'overwrite', 'sweep', 'layers', 'keepDense', 'device', 'threads', 'calibration', 'evaluation']);
/** Settings with sub-keys that may be swept one by one (`calibration.nsamples`). */
const NESTED = new Set(['calibration', 'evaluation']);

export interface PlannedPoint {
  index: number;
  name: string;
  values: Record<string, unknown>;
  config: ResolvedConfig;
  method: string;
  pattern: PatternString;
  sparsity: number;
}

export interface SweepPlan {
  configFile: string;
  folder: string;
  keys: string[];
  executor: SweepExecutor;
  slurm: SlurmOptions;
  points: PlannedPoint[];
}

/** The sweep of a parsed config file; throws ConfigError naming `$.sweep…` paths. */
export function planSweep(configFile: string, raw: Record<string, unknown>): SweepPlan {
  const baseDir = path.dirname(configFile);
  resolveConfig(raw, baseDir); // the file as a whole first: schema, limits, the sweep's own shape
  const sweep = raw.sweep as SweepConfig | undefined;
  if (!sweep) throw new ConfigError([{ path: '$', message: 'has no "sweep": add e.g. "sweep": { "sparsity": [0.5, 0.6, 0.7] } (or run it with prunekit prune)' }]);
  const keys = Object.keys(sweep).filter((k) => !SWEEP_SETTINGS.includes(k));
  if (keys.length === 0) throw new ConfigError([{ path: '$.sweep', message: 'lists no values: add e.g. "method": ["apt", "sparsegpt"]' }]);
  const keyProblems = keys.flatMap((k) => sweptKeyProblems(k, raw));
  if (keyProblems.length) throw new ConfigError(keyProblems);

  const folder = typeof raw.output === 'string' ? path.resolve(baseDir, raw.output) : path.join(baseDir, `${path.basename(configFile).replace(/(\.prune)?\.json$/i, '')}-sweep`);
  const base: Record<string, unknown> = { ...raw, output: folder, overwrite: false };
  delete base.sweep;
  const points: PlannedPoint[] = [];
  const problems: SchemaProblem[] = [];
  const seen = new Set<string>();
  for (const combo of combinations(keys.map((k) => (sweep[k] as unknown[]).map((v, i) => ({ k, v, i }))))) {
    const values = Object.fromEntries(combo.map(({ k, v }) => [k, v]));
    let config: ResolvedConfig;
    try {
      config = resolveConfig(withValues(base, values), baseDir);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems.push(...e.problems.map((p) => blame(p, combo)));
      continue;
    }
    const identity = sameRunKey(config);
    if (seen.has(identity)) continue;
    seen.add(identity);
    const pattern = parsePattern(config.pattern, config.sparsity);
    points.push({ index: points.length, name: '', values, config, method: config.method, pattern: config.pattern, sparsity: patternSparsity(pattern) });
  }
  if (problems.length) throw new ConfigError(dedupe(problems));
  nameFolders(points, keys, folder);
  return { configFile, folder, keys, executor: sweep.executor ?? 'local', slurm: sweep.slurm ?? {}, points };
}

function sweptKeyProblems(key: string, raw: Record<string, unknown>): SchemaProblem[] {
  const at = childPath('$.sweep', key);
  const top = PRUNE_CONFIG_SCHEMA.properties as Record<string, JsonSchema>;
  const [parent, child, ...rest] = key.split('.');
  if (child === undefined) {
    if (!Object.hasOwn(top, key)) return [{ path: at, message: `"${key}" is not a config setting` }];
    if (NOT_SWEPT.has(key)) return [{ path: at, message: `"${key}" cannot be swept${NESTED.has(key) ? ` as a whole: sweep its keys, e.g. "${key}.nsamples"` : ' (a sweep runs one model, into one folder, on one machine)'}` }];
    return [];
  }
  if (!NESTED.has(parent) || rest.length) return [{ path: at, message: `"${key}": only calibration.<key> and evaluation.<key> may be swept by a dotted name` }];
  const branch = (top[parent].anyOf ?? [top[parent]]).find((b) => b.properties);
  if (!branch?.properties || !Object.hasOwn(branch.properties, child)) return [{ path: at, message: `"${child}" is not a setting of ${parent}` }];
  if (typeof raw[parent] !== 'object' || raw[parent] === null) return [{ path: at, message: `needs "${parent}" in the config to vary (add "${parent}": { "path": … })` }];
  return [];
}

/** The cartesian product, first key slowest. */
function* combinations<T>(lists: T[][]): Generator<T[]> {
  if (lists.length === 0) {
    yield [];
    return;
  }
  for (const head of lists[0]) for (const tail of combinations(lists.slice(1))) yield [head, ...tail];
}

/** base with each swept value set (dotted keys inside their object, copied). */
function withValues(base: Record<string, unknown>, values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, v] of Object.entries(values)) {
    const [parent, child] = key.split('.');
    if (child === undefined) out[key] = v;
    else out[parent] = { ...(out[parent] as Record<string, unknown>), [child]: v };
  }
  return out;
}

/** A point's problem at the sweep value that caused it: `$.sparsity` → `$.sweep.sparsity[2]`. */
function blame(p: SchemaProblem, combo: { k: string; i: number }[]): SchemaProblem {
  for (const { k, i } of combo) {
    const at = `$.${k}`;
    if (p.path === at || p.path.startsWith(`${at}.`) || p.path.startsWith(`${at}[`)) return { path: childPath(childPath('$.sweep', k), i), message: p.message };
  }
  return p;
}

function dedupe(problems: SchemaProblem[]): SchemaProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => !seen.has(`${p.path}\n${p.message}`) && !!seen.add(`${p.path}\n${p.message}`));
}

/** Two points with this key would be the same run: the sparsity only counts where some layer prunes unstructured. */
function sameRunKey(c: ResolvedConfig): string {
  const patterns = [c.pattern, ...c.layers.overrides.filter((o) => o.sparsity === undefined).map((o) => o.pattern ?? c.pattern)];
  const sparsityUsed = patterns.includes('unstructured');
  return JSON.stringify({ ...c, output: '', sparsity: sparsityUsed ? c.sparsity : null });
}

/** `apt-50`, `sparsegpt-2of4`, `wanda-60-nsamples-32`: the method, the sparsity or pattern, then the other swept values. */
function nameFolders(points: PlannedPoint[], keys: string[], folder: string): void {
  const others = keys.filter((k) => k !== 'method' && k !== 'sparsity' && k !== 'pattern');
  const used = new Set<string>();
  for (const p of points) {
    const tag = p.pattern === 'unstructured' ? String(Math.round(p.sparsity * 10000) / 100) : p.pattern.replace(':', 'of');
    const parts = [p.method, tag, ...others.map((k) => `${k.split('.').pop()}-${String(p.values[k])}`)];
    let name = parts.join('-').replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 120);
    if (used.has(name)) name = `${name}-${p.index}`;
    used.add(name);
    p.name = name;
    p.config = { ...p.config, output: path.join(folder, name) };
  }
}
