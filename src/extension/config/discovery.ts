// Which *.prune.json files point at a checkpoint, and where a new one for it goes. A checkpoint is named in
// many ways (relative or absolute, the folder or its model.onnx, with or without a trailing slash): all are
// brought to one key. Node paths, no vscode (tested with Node).

import * as path from 'node:path';
import { CONFIG_FILE_SUFFIX } from '../../protocol/config';
import { configTree } from './tree';
import { scanTyping } from './typing';
import { findNodeAtLocation } from 'jsonc-parser';

/**
 * One key per model: the absolute, normalised path, with `<folder>/model.onnx` standing for `<folder>` (the
 * backend opens a folder's model.onnx). realpath, when given, also equates symlinked names.
 */
export function checkpointKey(checkpoint: string, realpath: (p: string) => string = (p) => p): string {
  let p = path.resolve(checkpoint);
  try {
    p = realpath(p);
  } catch {
    // not on disk: the written path is the best key there is
  }
  if (path.basename(p).toLowerCase() === 'model.onnx') p = path.dirname(p);
  return process.platform === 'win32' ? p.toLowerCase() : p;
}

/**
 * The checkpoint a config's text names, resolved against the config's folder; undefined if it names none.
 * Read with the tolerant tree, so a config being edited (a trailing comma, a half-typed field) still counts.
 */
export function configCheckpoint(text: string, configPath: string): string | undefined {
  const tree = configTree(text);
  const node = tree && findNodeAtLocation(tree, ['checkpoint']);
  if (node?.type !== 'string' || node.value === '' || scanTyping(text).unclosed.has(node.offset)) return undefined;
  return path.resolve(path.dirname(configPath), node.value);
}

/** The model file `prunekit inspect` should read for a config: its checkpoint, or for a repository folder with a
 *  `variant`, that variant's `onnx/<variant>.onnx`. */
export function configModelPath(text: string, configPath: string): string | undefined {
  const checkpoint = configCheckpoint(text, configPath);
  const tree = configTree(text);
  const variant = tree && findNodeAtLocation(tree, ['variant']);
  if (!checkpoint || variant?.type !== 'string' || scanTyping(text).unclosed.has(variant.offset) || variant.value === '' || /\.onnx$/i.test(checkpoint)) return checkpoint;
  return path.join(checkpoint, 'onnx', `${variant.value.replace(/\.onnx$/i, '')}.onnx`);
}

export interface ConfigFile {
  path: string;
  text: string;
}

/** The configs among `configs` whose checkpoint is this checkpoint, in the order given. */
export function configsForCheckpoint(checkpoint: string, configs: readonly ConfigFile[], realpath?: (p: string) => string): ConfigFile[] {
  const key = checkpointKey(checkpoint, realpath);
  return configs.filter((c) => {
    const target = configCheckpoint(c.text, c.path);
    return target !== undefined && checkpointKey(target, realpath) === key;
  });
}

/**
 * The file a new config for this checkpoint goes to: `<name>.prune.json` beside a `<name>.onnx` file, and
 * `<folder>.prune.json` beside a model folder (or its model.onnx); in `dir` instead when given (the folder
 * beside the model is read-only). Never an existing file: `<name>-2.prune.json`, `-3`, ...
 */
export function newConfigPath(checkpoint: string, exists: (p: string) => boolean, dir?: string): string {
  const key = checkpointKey(checkpoint);
  const isModelFile = /\.onnx$/i.test(key);
  const stem = isModelFile ? path.basename(key).replace(/\.onnx$/i, '') : path.basename(key);
  const folder = dir ?? path.dirname(key);
  for (let n = 1; ; n++) {
    const candidate = path.join(folder, `${stem}${n === 1 ? '' : `-${n}`}${CONFIG_FILE_SUFFIX}`);
    if (!exists(candidate)) return candidate;
  }
}
