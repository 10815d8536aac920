// Hugging Face checkpoints: a folder with config.json, model.safetensors (or shards model-0000X-of-0000N.safetensors
// with model.safetensors.index.json) and the tokenizer files.
//
// Opening reads and validates config.json, the index and every shard's header (no tensor data), then builds the
// model family's ONNX graph (models/hf.ts) in the HF [out, in] layout, each weight an initializer named as in
// the checkpoint and stored as EXTERNAL data:
//  - an F32 tensor points into its safetensors file (location = the shard's file name, offset = its first byte):
//    the bytes are referenced, never copied;
//  - an F16/BF16/F64 tensor is widened to float32 for compute, so it cannot be referenced in place: it points into
//    a virtual data file (WIDENED_LOCATION) whose bytes are made on demand, one tensor at a time.
// The pipeline reads tensors through tensorData/weightAsFloat32 (range reads, one tensor at a time). A whole-model
// onnxruntime session (perplexity) gets the graph's bytes and its data files IN MEMORY (onnxruntime refuses
// external data outside the model's folder, and the input folder is never written to).
//
// Writing makes a new folder with the same config and tokenizer files, and shards with the same file names,
// headers (so the same keys, dtypes and offsets), with the replaced tensors re-encoded in their own dtype and every
// other byte copied; the index is rewritten with its total size. Built in a temporary folder, renamed when complete.

import { copyFile, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { checkStoredShapes } from '../models/expected';
import { HfFamily, hfFamily } from '../models/hf';
import type { TensorRef } from '../models/weights';
import { DataType, encodeModel, ModelProto } from '../onnx/proto';
import type { ModelSource } from '../onnx/session';
import { checkNotInput, writeFolder } from './atomicFolder';
import type { Checkpoint, CheckpointWriteOptions } from './checkpoint';
import { CheckpointError } from './errors';
import { repositoryVariants, SIDE_FILES } from './onnxReader';
import { DEFAULT_CHUNK_SIZE, RangeReader, withRangeReader } from './rangeReader';
import { isFloatDtype, onnxTypeOf, readSafetensorsHeader, readTensorBytes, readTensorFloat32, SafetensorsEntry, SafetensorsHeader } from './safetensors';
import { Replacement, replacementBytes, replacementElements } from './tensorSource';
import { DATA_LOCATION_EXTERNAL } from './tensors';

export const CONFIG_FILE = 'config.json';
export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
/** The virtual data file of widened (non-F32) tensors: never on disk, made in memory when a session needs it. */
export const WIDENED_LOCATION = 'prunekit-widened-float32.bin';

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** A folder with config.json and no ONNX model (no .onnx file in it, no float `onnx/*.onnx` as repositories lay them out):
 *  a Hugging Face checkpoint, whose safetensors files openHfCheckpoint then requires. */
export function isHfFolder(dir: string): boolean {
  try {
    if (!statSync(dir).isDirectory()) return false;
    if (!isFile(path.join(dir, CONFIG_FILE))) return false;
    const files = readdirSync(dir);
    // A repository with float ONNX variants opens as ONNX; one with only quantized variants too, unless it has safetensors.
    const variants = repositoryVariants(dir);
    if (variants && (variants.float.length > 0 || !files.some((f) => f.endsWith('.safetensors')))) return false;
    return !files.some((f) => f.toLowerCase().endsWith('.onnx'));
  } catch {
    return false;
  }
}

/** Bytes of config.json or the safetensors index (real ones are kilobytes; a 70B model's index ~100 KB). */
const MAX_JSON_BYTES = 16 << 20;

/** A JSON file of a checkpoint (config.json, the index), refused past MAX_JSON_BYTES before it is read. */
export function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > MAX_JSON_BYTES) throw new CheckpointError('corrupt-model', `${file} is ${size} bytes; ${what} may be at most ${MAX_JSON_BYTES} bytes`, file);
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError('missing-model', `cannot read ${what} ${file}: ${(e as Error).message}`, file, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError('corrupt-model', `${file} is not valid JSON: ${(e as Error).message}`, file, { cause: e });
  }
}

interface IndexJson {
  metadata?: Record<string, unknown>;
  weight_map: Record<string, string>;
}

/** The shard files (in order) and which tensor each holds, from the index; validated against the headers. */
function readShards(dir: string): { shards: SafetensorsHeader[]; index: IndexJson | null; entries: Map<string, SafetensorsEntry> } {
  const indexPath = path.join(dir, INDEX_FILE);
  let index: IndexJson | null = null;
  let files: string[];
  if (isFile(indexPath)) {
    const json = readJson(indexPath, 'the safetensors index');
    const map = (json as { weight_map?: unknown } | null)?.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map) || Object.values(map).some((v) => typeof v !== 'string')) {
      throw new CheckpointError('corrupt-model', `${indexPath}: weight_map must map tensor names to shard file names`, indexPath);
    }
    index = json as IndexJson;
    files = [...new Set(Object.values(index.weight_map))].sort();
    for (const f of files) {
      if (f !== path.basename(f) || f === '.' || f === '..' || !f.endsWith('.safetensors')) {
        throw new CheckpointError('corrupt-model', `${indexPath}: shard '${f}' is not a .safetensors file name in the same folder`, indexPath);
      }
      if (!isFile(path.join(dir, f))) {
        throw new CheckpointError('missing-external-data', `shard ${path.join(dir, f)} (listed in ${indexPath}) does not exist`, path.join(dir, f));
      }
    }
  } else {
    files = [SINGLE_FILE];
  }
  const shards = files.map((f) => readSafetensorsHeader(path.join(dir, f)));
  const entries = new Map<string, SafetensorsEntry>();
  for (const h of shards) {
    for (const [name, e] of h.tensors) {
      const prev = entries.get(name);
      if (prev) throw new CheckpointError('corrupt-model', `tensor '${name}' is in both ${prev.file} and ${h.file}`, h.file);
      const mapped = index && Object.hasOwn(index.weight_map, name) ? index.weight_map[name] : undefined;
      if (index && mapped !== path.basename(h.file)) {
        throw new CheckpointError('corrupt-model', `${indexPath}: tensor '${name}' of ${h.file} is ${mapped !== undefined ? `mapped to ${mapped}` : 'not listed'}`, indexPath);
      }
      entries.set(name, e);
    }
  }
  if (index) {
    for (const [name, f] of Object.entries(index.weight_map)) {
      if (!entries.has(name)) throw new CheckpointError('corrupt-model', `${indexPath}: tensor '${name}' is mapped to ${f}, which does not hold it`, indexPath);
    }
  }
  return { shards, index, entries };
}

export interface HfOpenOptions {
  /** Bytes per read call (default 64 MiB). */
  chunkSize?: number;
}

export class HfCheckpoint implements Checkpoint {
  readonly format = 'huggingface' as const;
  readonly model: ModelProto;
  readonly hasExternalData = true;
  readonly storageDtype: string;
  /** Files copied into a written folder: name → absolute source path. */
  readonly sideFiles: Map<string, string>;
  /** Initializer name → the safetensors tensor behind it. */
  private readonly sources = new Map<string, SafetensorsEntry>();
  /** Widened tensors' offsets in the virtual WIDENED_LOCATION file. */
  private readonly widened = new Map<string, number>();
  private widenedBytes = 0;

  /** The folder (absolute). */
  readonly path: string;

  constructor(
    dir: string,
    readonly config: Record<string, unknown>,
    readonly shards: SafetensorsHeader[],
    readonly index: IndexJson | null,
    readonly entries: ReadonlyMap<string, SafetensorsEntry>,
    readonly chunkSize: number,
  ) {
    this.path = dir;
    const configFile = path.join(this.path, CONFIG_FILE);
    let family: HfFamily;
    try {
      family = hfFamily(config.model_type, configFile);
    } catch (e) {
      throw new CheckpointError('unsupported-model', (e as Error).message, configFile, { cause: e });
    }
    const dtypes = new Map<string, number>();
    const weights = new Map<string, TensorRef>();
    const stored = new Map([...entries].map(([name, e]) => [name, e.dtype]));
    let shapes: Map<string, number[]>;
    try {
      shapes = checkStoredShapes(configFile, config, family.expectedTensors(config, stored), entries);
    } catch (e) {
      const message = (e as Error).message;
      throw new CheckpointError('unsupported-model', message.startsWith(configFile) ? message : `${configFile}: ${message}`, configFile, { cause: e });
    }
    for (const [name] of shapes) {
      const e = entries.get(name) as SafetensorsEntry; // checkStoredShapes found every one
      if (!isFloatDtype(e.dtype)) {
        throw new CheckpointError('unsupported-dtype', `tensor '${name}' in ${e.file} is ${e.dtype}; weights must be F32, F16, BF16 or F64`, e.file);
      }
      const elements = e.shape.reduce((a, b) => a * b, 1);
      let location = path.basename(e.file);
      let offset = e.offset;
      if (e.dtype !== 'F32') {
        location = WIDENED_LOCATION;
        offset = this.widenedBytes;
        this.widened.set(name, offset);
        this.widenedBytes += elements * 4;
      }
      if (e.shape.length === 2) dtypes.set(e.dtype, (dtypes.get(e.dtype) ?? 0) + elements);
      this.sources.set(name, e);
      weights.set(name, {
        dims: e.shape,
        initializer: {
          name,
          dims: e.shape,
          dataType: DataType.FLOAT,
          dataLocation: DATA_LOCATION_EXTERNAL,
          externalData: [{ key: 'location', value: location }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(elements * 4) }],
        },
      });
    }
    try {
      this.model = family.build(config, weights, stored);
    } catch (e) {
      throw new CheckpointError('corrupt-model', `${this.path}: ${(e as Error).message}`, this.path, { cause: e });
    }
    const main = [...dtypes].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'F32';
    this.storageDtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', F64: 'float64' }[main] ?? main;
    this.sideFiles = new Map(SIDE_FILES.map((f) => [f, path.join(dir, f)] as [string, string]).filter(([, p]) => isFile(p)));
  }

  get configPath(): string {
    return path.join(this.path, CONFIG_FILE);
  }

  get tokenizerPath(): string | undefined {
    return this.sideFiles.get('tokenizer.json');
  }

  /** The safetensors tensor behind an initializer of the graph. */
  source(name: string): SafetensorsEntry {
    const e = this.sources.get(name);
    if (!e) throw new CheckpointError('no-such-tensor', `the graph built from ${this.path} has no weight named '${name}'`, this.path);
    return e;
  }

  weightAsFloat32(name: string): Float32Array {
    return readTensorFloat32(this.source(name));
  }

  /** The initializer's FLOAT bytes (widened from the stored dtype when it is not F32). */
  tensorData(name: string): Uint8Array {
    const e = this.source(name);
    if (e.dtype === 'F32') return readTensorBytes(e);
    const v = readTensorFloat32(e);
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }

  /** The graph with its data files in memory: the F32 shards it references, and the widened tensors. */
  sessionSource(): ModelSource {
    const externalData: { path: string; data: Uint8Array }[] = [];
    const referenced = new Set([...this.sources.values()].filter((e) => e.dtype === 'F32').map((e) => e.file));
    for (const file of referenced) externalData.push({ path: path.basename(file), data: withRangeReader(file, this.chunkSize, (r) => r.readAll()) });
    if (this.widenedBytes > 0) {
      const data = new Uint8Array(this.widenedBytes);
      for (const [name, offset] of this.widened) data.set(this.tensorData(name), offset);
      externalData.push({ path: WIDENED_LOCATION, data });
    }
    return { model: encodeModel(this.model), externalData };
  }

  /** The element type a weight is written back in: its safetensors dtype (the graph computes in float32). */
  storedType(name: string): DataType {
    return onnxTypeOf(this.source(name).dtype);
  }

  async write(out: string, replacements: ReadonlyMap<string, Replacement>, opts: CheckpointWriteOptions = {}): Promise<void> {
    await writeHfCheckpoint(this, out, replacements, opts);
  }
}

/** Opens the Hugging Face folder `dir` (validating config.json, the index and every shard's header). */
export function openHfCheckpoint(dir: string, opts: HfOpenOptions = {}): HfCheckpoint {
  const abs = path.resolve(dir);
  const configFile = path.join(abs, CONFIG_FILE);
  if (!isFile(configFile)) throw new CheckpointError('missing-model', `no ${CONFIG_FILE} in ${abs}: not a Hugging Face checkpoint folder`, abs);
  if (!isFile(path.join(abs, SINGLE_FILE)) && !isFile(path.join(abs, INDEX_FILE))) {
    throw new CheckpointError(
      'missing-model',
      `no ${SINGLE_FILE} and no ${INDEX_FILE} in ${abs}: only safetensors Hugging Face checkpoints are read (save the model with safe_serialization=True)`,
      abs,
    );
  }
  const config = readJson(configFile, 'the model config');
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new CheckpointError('corrupt-model', `${configFile}: not a JSON object`, configFile);
  const { shards, index, entries } = readShards(abs);
  return new HfCheckpoint(abs, config as Record<string, unknown>, shards, index, entries, opts.chunkSize ?? DEFAULT_CHUNK_SIZE);
}

// ---------------------------------------------------------------------------------------------------------
// Writing

/**
 * Writes `src` with `replacements` (initializer = HF tensor name → float32 values or a TensorSource, stored in the
 * tensor's own dtype) to the new folder `out`; every other byte of every shard is copied.
 */
export async function writeHfCheckpoint(
  src: HfCheckpoint,
  out: string,
  replacements: ReadonlyMap<string, Replacement>,
  opts: CheckpointWriteOptions & { fsync?: boolean; chunkSize?: number } = {},
): Promise<void> {
  const dir = path.resolve(out);
  for (const [name, r] of replacements) {
    const e = src.source(name);
    const n = e.shape.reduce((a, b) => a * b, 1);
    const got = replacementElements(r);
    if (got !== n) {
      throw new CheckpointError('bad-replacement', `replacement for '${name}' has ${got} values; the tensor in ${e.file} has shape [${e.shape.join(', ')}] (${n} values)`, e.file);
    }
  }
  const byFile = new Map<string, [SafetensorsEntry, Replacement][]>();
  for (const [name, r] of replacements) {
    const e = src.source(name);
    byFile.set(e.file, [...(byFile.get(e.file) ?? []), [e, r]]);
  }
  checkNotInput(dir, [src.path, ...src.shards.map((h) => h.file), ...src.sideFiles.values()]);
  const chunkSize = opts.chunkSize ?? src.chunkSize;
  const fsync = opts.fsync !== false;
  const hooks = {
    ...opts.hooks,
    // The written folder is a checkpoint too: its session reads the new shards.
    beforeCommit: async (tmp: string) => opts.beforeCommit?.({ dir: tmp, sessionSource: () => openHfCheckpoint(tmp).sessionSource() }),
  };
  await writeFolder(dir, { overwrite: !!opts.overwrite, marker: CONFIG_FILE, chunkSize, signal: opts.signal, hooks }, async (tmp, sink) => {
    for (const h of src.shards) {
      const changes = (byFile.get(h.file) ?? []).sort((a, b) => a[0].offset - b[0].offset);
      await sink.file(path.join(tmp, path.basename(h.file)), fsync, async (write) => {
        const r = RangeReader.open(h.file, chunkSize);
        try {
          const copy = async (from: number, to: number) => {
            for (const chunk of r.chunks(from, to - from)) await write(chunk);
          };
          let at = 0;
          for (const [e, r] of changes) {
            await copy(at, e.offset);
            await write(replacementBytes(r, onnxTypeOf(e.dtype)));
            at = e.offset + e.length;
          }
          await copy(at, h.size);
        } finally {
          r.close();
        }
      });
    }
    if (src.index) {
      const total = src.shards.reduce((a, h) => a + h.size - h.dataStart, 0);
      const json = { ...src.index, metadata: { ...(src.index.metadata ?? {}), total_size: total } };
      sink.current = path.join(tmp, INDEX_FILE);
      await writeFile(sink.current, JSON.stringify(json, null, 2) + '\n');
    }
    for (const [name, from] of src.sideFiles) {
      sink.current = path.join(tmp, name);
      await copyFile(from, sink.current);
    }
  });
}
