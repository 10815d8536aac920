// What a sweep's points share, computed once and kept in <sweep>/shared/ so that Slurm tasks on other machines find it
// too: the calibration and evaluation text as token ids (a `.json` id file every point reads instead of the text:
// the same ids, no tokenizing per point), and the dense perplexity (measured by the first point that evaluates, read
// by the others; concurrent Slurm tasks that start before it exists measure it themselves).

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { ResolvedConfig } from '../../protocol/config';
import { EventBody } from '../../protocol/events';
import { loadTokenizer, readTokens, TextTokenizer } from '../data/tokens';
import { DenseStore } from '../pipeline/run';
import { PlannedPoint } from './expand';

export function sharedDir(sweepDir: string): string {
  return path.join(sweepDir, 'shared');
}

/** Writes `text` to `file` under a temporary name and renames it into place (readers never see half a file). */
export function writeFileAtomically(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/**
 * Every text data file of the points tokenized once into shared/<name>-<hash>.ids.json (the hash covers the text and
 * the tokenizer, so a changed file is tokenized again), and the points' configs pointing to those files. Token-id
 * files (.json) are left as they are. `warn` gets the tokenizer's warnings (bytes that are not UTF-8).
 */
export function shareTokens(points: PlannedPoint[], sweepDir: string, warn: (message: string) => void): PlannedPoint[] {
  const idFiles = new Map<string, string>();
  const tokenizers = new Map<string, TextTokenizer>();
  const idsOf = (file: string, tokenizer: string): string => {
    const key = `${file}\n${tokenizer}`;
    let out = idFiles.get(key);
    if (!out) {
      out = path.join(sharedDir(sweepDir), `${path.basename(file).replace(/[^A-Za-z0-9._-]+/g, '_')}-${contentHash([file, tokenizer])}.ids.json`);
      if (!existsSync(out)) {
        if (!tokenizers.has(tokenizer)) tokenizers.set(tokenizer, loadTokenizer(tokenizer));
        writeFileAtomically(out, JSON.stringify(Array.from(readTokens(file, tokenizers.get(tokenizer), (m) => warn(`${file}: ${m}`)))));
      }
      idFiles.set(key, out);
    }
    return out;
  };
  const shared = (d: { path: string } | null | false, tokenizer: string) => (d && !/\.json$/i.test(d.path) ? { ...d, path: idsOf(d.path, tokenizer) } : d);
  return points.map((p) => {
    const c = p.config;
    const config: ResolvedConfig = { ...c, calibration: shared(c.calibration, c.tokenizer) as ResolvedConfig['calibration'], evaluation: shared(c.evaluation, c.tokenizer) as ResolvedConfig['evaluation'] };
    return { ...p, config };
  });
}

function contentHash(files: string[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(readFileSync(f)).update('\0');
  return h.digest('hex').slice(0, 12);
}

/** The dense perplexities of a sweep, in shared/dense-perplexity.json (read again at every get: another task may have added one). */
export function fileDenseStore(sweepDir: string): DenseStore {
  const file = path.join(sharedDir(sweepDir), 'dense-perplexity.json');
  const read = (): Record<string, EventBody<'evaluation.finished'>> => {
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as Record<string, EventBody<'evaluation.finished'>>;
    } catch {
      return {}; // none yet (or unreadable: measured again, and rewritten)
    }
  };
  return {
    get: (key) => read()[key],
    put: (key, evaluation) => writeFileAtomically(file, JSON.stringify({ ...read(), [key]: evaluation }, null, 2) + '\n'),
  };
}
