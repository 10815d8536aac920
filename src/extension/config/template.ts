// The text of a new *.prune.json: prefilled from the prunekit.* settings, with a comment on each field, and
// paths relative to the config's folder so the model, data and config can move together. Also the guess of
// calibration / evaluation files from the names of nearby text files. No vscode here (tested with Node).

import * as path from 'node:path';
import { resolveConfig } from '../../protocol/config';
import { MethodName, METHOD_NEEDS } from '../../protocol/pruning';

/** The prunekit.* settings a new config starts from (paths absolute; "" = not set). */
export interface NewConfigSettings {
  method: MethodName;
  sparsity: number;
  pattern: string;
  device: string;
  calibrationPath: string;
  evaluationPath: string;
  /** "" = the pruned model goes beside the checkpoint. */
  outputDirectory: string;
}

/** Written where no calibration data was found; the diagnostics name it as a placeholder to replace. */
export const CALIBRATION_PLACEHOLDER = '<calibration text: a .txt or .jsonl file, or token ids as .json>';

export function isPlaceholder(value: string): boolean {
  return /^<.*>$/.test(value);
}

export interface NewConfigInputs {
  /** Absolute path of the config file to be written. */
  configPath: string;
  /** Absolute checkpoint path (a .onnx file or a model folder). */
  checkpoint: string;
  settings: NewConfigSettings;
  /** Candidate data files (absolute .txt/.jsonl/.json paths, nearest first) for when the settings name none. */
  dataCandidates?: readonly string[];
}

/** The config file's text (JSON with comments). resolveConfig accepts it, the placeholder aside. */
export function newConfigText(inputs: NewConfigInputs): string {
  const { configPath, checkpoint, settings } = inputs;
  const dir = path.dirname(configPath);
  const rel = (p: string) => {
    const r = path.relative(dir, p).split(path.sep).join('/');
    return r.startsWith('../') || r === '..' ? r : `./${r}`;
  };
  const method = settings.method;
  const needsData = METHOD_NEEDS[method] !== 'none';
  // magnitude reads no calibration data: a guessed file would only be loaded for nothing.
  const calibration = settings.calibrationPath || (needsData ? guessDataFile('calibration', inputs.dataCandidates ?? []) : undefined);
  const evaluation = settings.evaluationPath || guessDataFile('evaluation', inputs.dataCandidates ?? []);

  const q = (v: unknown) => JSON.stringify(v);
  const lines: string[] = ['{', `  // PruneKit pruning config (JSON with comments). Hover a field for its meaning; run with the ▶ above.`];
  const field = (comment: string, key: string, value: string, last = false) => {
    lines.push(`  // ${comment}`, `  ${q(key)}: ${value}${last ? '' : ','}`);
  };
  field('The model to prune: a .onnx file, a folder holding model.onnx, or a Hugging Face folder (relative to this file).', 'checkpoint', q(rel(checkpoint)));
  field('apt | sparsegpt | wanda | magnitude (all but magnitude need calibration data).', 'method', q(method));
  field('"unstructured" (at `sparsity`) or "N:M", e.g. "2:4" (N of every M weights zeroed).', 'pattern', q(settings.pattern));
  field('Fraction of weights zeroed per layer (unstructured only).', 'sparsity', String(settings.sparsity));
  if (needsData || calibration) {
    const calPath = calibration ? rel(calibration) : CALIBRATION_PLACEHOLDER;
    field('Calibration text: nsamples windows of seqlen tokens (seqlen null: min(2048, the model\'s maximum positions)).', 'calibration', `{ "path": ${q(calPath)}, "nsamples": 128, "seqlen": null, "seed": 0 }`);
  }
  field('Dense and pruned perplexity on held-out text, or false to skip.', 'evaluation', evaluation ? `{ "path": ${q(rel(evaluation))}, "maxWindows": null }` : 'false');
  field('Which layers (names as `prunekit inspect` lists them, e.g. "layers.3.mlp.down_proj"; globs with *, or "re:" regexes).', 'layers', '{ "include": ["*"], "exclude": [], "overrides": [] }');
  field('The LM head and depthwise convs (Mamba\'s conv1d) stay dense unless set to false.', 'keepDense', '{ "lmHead": true, "depthwiseConv": true }');
  field('Where the pruned model goes (null: beside the checkpoint, named after it, the method and the pattern).', 'output', settings.outputDirectory ? q(rel(path.join(settings.outputDirectory, defaultOutputName(checkpoint, dir, settings)))) : 'null');
  field('auto | cpu | cuda | cuda:N | webgpu.', 'device', q(settings.device), true);
  lines.push('}', '');
  return lines.join('\n');
}

/**
 * The folder name resolveConfig gives the output by default (`<model>-apt-50`), reused under outputDirectory;
 * with settings it rejects (the file's Problems will say why), the model's name.
 */
function defaultOutputName(checkpoint: string, dir: string, s: NewConfigSettings): string {
  try {
    return path.basename(resolveConfig({ checkpoint, method: s.method, sparsity: s.sparsity, pattern: s.pattern, calibration: { path: 'unused' } }, dir).output);
  } catch {
    return `${path.basename(checkpoint).replace(/\.onnx$/i, '')}-pruned`;
  }
}

/**
 * The data file whose name suggests the purpose: calibration prefers "calib", then "train", then well-known
 * corpora, never "valid"/"test"/"eval"; evaluation prefers "valid"/"test"/"eval". Ties: the earlier
 * (nearer) candidate. undefined when no name says anything.
 */
export function guessDataFile(kind: 'calibration' | 'evaluation', candidates: readonly string[]): string | undefined {
  const score = (file: string): number => {
    const name = path.basename(file).toLowerCase();
    if (!/\.(txt|jsonl|raw|json)$/.test(name) || /^(readme|license|licence|requirements|notice|changelog|merges|vocab|tokenizer|config|special_tokens_map|tokenizer_config|generation_config)\b/.test(name)) return 0;
    const evalName = /valid|(^|[^a-z])val([^a-z]|$)|test|eval|heldout/.test(name);
    if (kind === 'evaluation') return evalName ? 2 : 0;
    if (evalName) return 0;
    if (/calib/.test(name)) return 4;
    if (/train/.test(name)) return 3;
    if (/c4|pile|redpajama|wikitext|tinystories|shakespeare|corpus/.test(name)) return 1;
    return 0;
  };
  let best: string | undefined;
  let bestScore = 0;
  for (const c of candidates) {
    const s = score(c);
    if (s > bestScore) [best, bestScore] = [c, s];
  }
  return best;
}
