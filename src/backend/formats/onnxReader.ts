// Opening an ONNX checkpoint: the model file (a `.onnx` path, or a folder holding `model.onnx`), its external data
// files and the tokenizer/config files beside it. Everything is validated up front (protobuf, every external
// reference: file present, range inside it, length matching the tensor's shape), so a run fails before any work
// with an error that names the file. Files are read by ranges (RangeReader), never with readFileSync, so external
// data files over 2 GiB work.

import { existsSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { splitVariants } from '../../protocol/variants';
import { DataType, decodeModel, ModelProto, TensorProto } from '../onnx/proto';
import { byteLengthOf, bytesToFloat32, dataTypeName, isFloatType } from './dtype';
import { CheckpointError, errnoCode } from './errors';
import { DEFAULT_CHUNK_SIZE, RangeReader, withRangeReader } from './rangeReader';
import { dimsOf, elementCount, externalEntry, forEachTensor, inlineBytes, isExternal } from './tensors';

/** The file name a checkpoint folder's model has, and the one written outputs use. */
export const MODEL_FILE = 'model.onnx';

/**
 * Files copied beside a written model when the input has them: tokenizer, model config and generation settings
 * (Hugging Face and onnxruntime-genai conventions).
 */
export const SIDE_FILES = [
  'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'vocab.json', 'vocab.txt',
  'merges.txt', 'tokenizer.model', 'spiece.model', 'sentencepiece.bpe.model', 'chat_template.jinja', 'chat_template.json',
  'config.json', 'generation_config.json', 'genai_config.json', 'preprocessor_config.json',
];

/** A model inside a repository folder: written back at the same place in the output (`onnx/<variant>.onnx`). */
export interface Repository {
  /** The folder holding config.json and `onnx/`. */
  root: string;
  /** The model file's name without `.onnx`: `model`, `model_fp16`, `decoder_model_merged`. */
  variant: string;
}

/** The `.onnx` files of `<root>/onnx` as variant names, float and quantized apart; null when there are none. */
export function repositoryVariants(root: string): { float: string[]; quantized: string[] } | null {
  let files: string[];
  try {
    files = readdirSync(path.join(root, 'onnx'));
  } catch {
    return null;
  }
  const variants = splitVariants(files);
  return variants.float.length + variants.quantized.length > 0 ? variants : null;
}

/** The repository a model file sits in (`<root>/onnx/x.onnx` with `<root>/config.json`), if any. */
export function repositoryOf(modelPath: string): Repository | undefined {
  const dir = path.dirname(modelPath);
  if (path.basename(dir) !== 'onnx' || !isFile(path.join(dir, '..', 'config.json'))) return undefined;
  return { root: path.dirname(dir), variant: path.basename(modelPath).replace(/\.onnx$/i, '') };
}

/** The model file of repository `root` for `variant` (`model_fp16`, `model_fp16.onnx` or `onnx/model_fp16.onnx`), or
 *  its only float variant. */
function repositoryModel(root: string, variants: { float: string[]; quantized: string[] }, variant: string | undefined): string {
  const choices = `float variants: ${variants.float.join(', ') || 'none'}${variants.quantized.length ? `; quantized: ${variants.quantized.join(', ')}` : ''}`;
  const name = variant?.replace(/^onnx\//, '').replace(/\.onnx$/i, '');
  if (name !== undefined) {
    if (variants.float.includes(name)) return path.join(root, 'onnx', `${name}.onnx`);
    if (variants.quantized.includes(name)) {
      throw new CheckpointError('missing-model', `variant ${name} of ${root} is quantized: PruneKit prunes float weights; prune a float variant (${variants.float.join(', ') || 'none here'}), then quantize the pruned one`, root);
    }
    throw new CheckpointError('missing-model', `no variant ${name} in ${path.join(root, 'onnx')} (${choices})`, root);
  }
  if (variants.float.length === 1) return path.join(root, 'onnx', `${variants.float[0]}.onnx`);
  throw new CheckpointError(
    'missing-model',
    variants.float.length === 0
      ? `${root} holds only quantized ONNX variants (${variants.quantized.join(', ')}): PruneKit prunes float weights; prune the float model, then quantize the pruned one`
      : `${root} is a model repository with several float ONNX variants (${variants.float.join(', ')}): choose one with --variant (the config's "variant")`,
    root,
  );
}

export interface OpenOptions {
  /** In a repository folder (`onnx/*.onnx`), the variant to open; default: its only float variant. */
  variant?: string;
  /** A tokenizer.json to use instead of the one beside the model (a file, or a folder holding tokenizer.json). */
  tokenizer?: string;
  /** Bytes per read call for model and external data files (default 64 MiB). */
  chunkSize?: number;
}

/** Where an initializer's bytes are. */
export type TensorStorage =
  | { kind: 'raw' }
  | { kind: 'typed' }
  | { kind: 'external'; file: string; offset: number; length: number };

export interface InitializerInfo {
  name: string;
  dims: number[];
  dataType: DataType;
  /** 'FLOAT', 'FLOAT16', ... */
  dtype: string;
  elements: number;
  /** Bytes in raw (little-endian) form; undefined for STRING tensors. */
  byteLength: number | undefined;
  storage: TensorStorage;
}

/** External reference of one tensor, validated at open time. */
export interface ExternalRef {
  file: string;
  offset: number;
  length: number;
}

export class OnnxCheckpoint {
  /** Initializers of the main graph by name. */
  private readonly byName = new Map<string, TensorProto>();
  /** Validated external references of every external tensor in the model (initializers, attributes, subgraphs). */
  private readonly external: Map<TensorProto, ExternalRef>;

  constructor(
    /** Absolute path of the .onnx file. */
    readonly modelPath: string,
    readonly model: ModelProto,
    /** Size of the model file in bytes. */
    readonly modelFileBytes: number,
    /** Files to copy beside a written model: output name → absolute source path. */
    readonly sideFiles: ReadonlyMap<string, string>,
    readonly chunkSize: number,
    external: Map<TensorProto, ExternalRef>,
    /** Set when the model is `<root>/onnx/<variant>.onnx`: the output keeps that layout. */
    readonly repository?: Repository,
  ) {
    for (const t of model.graph.initializer) this.byName.set(t.name, t);
    this.external = external;
  }

  /** The folder holding the model file. */
  get dir(): string {
    return path.dirname(this.modelPath);
  }

  /** tokenizer.json to use, if one was found (or given). */
  get tokenizerPath(): string | undefined {
    return this.sideFiles.get('tokenizer.json');
  }

  get configPath(): string | undefined {
    return this.sideFiles.get('config.json');
  }

  /** Absolute paths of the external data files the model references (sorted). */
  get externalFiles(): string[] {
    return [...new Set([...this.external.values()].map((r) => r.file))].sort();
  }

  get hasExternalData(): boolean {
    return this.external.size > 0;
  }

  /**
   * The tokenizer.json path, or a clear error naming the folder that was searched and how to give a path.
   * (A separate check: inspecting or writing a checkpoint does not need a tokenizer; calibration does.)
   */
  requireTokenizer(): string {
    const t = this.tokenizerPath;
    if (t) return t;
    throw new CheckpointError(
      'missing-tokenizer',
      `no tokenizer.json found beside the model in ${this.dir}: copy the model's tokenizer.json into that folder, ` +
        `or give its path explicitly (the "tokenizer" setting / option)`,
      this.dir,
    );
  }

  initializerNames(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The initializer's TensorProto (its data fields are views into the model file's bytes: do not mutate). */
  tensor(name: string): TensorProto {
    const t = this.byName.get(name);
    if (!t) throw new CheckpointError('no-such-tensor', `no initializer named '${name}' in ${this.modelPath}`, this.modelPath);
    return t;
  }

  info(name: string): InitializerInfo {
    return this.describe(this.tensor(name));
  }

  initializers(): InitializerInfo[] {
    return this.model.graph.initializer.map((t) => this.describe(t));
  }

  private describe(t: TensorProto): InitializerInfo {
    const elements = elementCount(t);
    const ext = this.external.get(t);
    return {
      name: t.name,
      dims: dimsOf(t),
      dataType: t.dataType,
      dtype: dataTypeName(t.dataType),
      elements,
      byteLength: byteLengthOf(t.dataType, elements),
      storage: ext ? { kind: 'external', ...ext } : t.rawData ? { kind: 'raw' } : { kind: 'typed' },
    };
  }

  /** The validated external reference of a tensor of this model, if it is stored externally. */
  externalRef(t: TensorProto): ExternalRef | undefined {
    return this.external.get(t);
  }

  /** The bytes (little-endian raw form) of an initializer: a fresh copy, from raw_data, a typed field or external data. */
  tensorData(name: string): Uint8Array {
    const t = this.tensor(name);
    const ext = this.external.get(t);
    if (ext) return this.readExternal(ext);
    return this.inline(t).slice();
  }

  /** An FLOAT, FLOAT16, BFLOAT16 (exact) or DOUBLE (rounded) initializer as float32 values. */
  weightAsFloat32(name: string): Float32Array {
    const t = this.tensor(name);
    if (!isFloatType(t.dataType)) {
      throw new CheckpointError(
        'unsupported-dtype',
        `initializer '${name}' in ${this.modelPath} is ${dataTypeName(t.dataType)}; weights must be FLOAT, FLOAT16, BFLOAT16 or DOUBLE`,
        this.modelPath,
      );
    }
    const ext = this.external.get(t);
    return bytesToFloat32(t.dataType, ext ? this.readExternal(ext) : this.inline(t));
  }

  /**
   * The bytes of any tensor of this model (initializer or attribute) in chunks of at most `chunkSize` bytes.
   * External chunks are views of one reused buffer: consume each before asking for the next.
   */
  *tensorChunks(t: TensorProto): Generator<Uint8Array, void, undefined> {
    const ext = this.external.get(t);
    if (!ext) {
      yield this.inline(t);
      return;
    }
    const r = RangeReader.open(ext.file, this.chunkSize);
    try {
      yield* r.chunks(ext.offset, ext.length);
    } finally {
      r.close();
    }
  }

  /** The bytes of any tensor of this model (initializer or attribute); inline raw_data is returned as a view. */
  tensorBytes(t: TensorProto): Uint8Array {
    const ext = this.external.get(t);
    return ext ? this.readExternal(ext) : this.inline(t);
  }

  /** Raw byte length of any tensor of this model. */
  byteLength(t: TensorProto): number {
    const ext = this.external.get(t);
    return ext ? ext.length : this.inline(t).length;
  }

  private inline(t: TensorProto): Uint8Array {
    let bytes: Uint8Array | undefined;
    try {
      bytes = inlineBytes(t);
    } catch (e) {
      throw new CheckpointError('unsupported-dtype', `${this.modelPath}: ${(e as Error).message}`, this.modelPath);
    }
    if (!bytes) throw new CheckpointError('corrupt-model', `tensor '${t.name}' in ${this.modelPath} has no data`, this.modelPath);
    return bytes;
  }

  private readExternal(ext: ExternalRef): Uint8Array {
    return withRangeReader(ext.file, this.chunkSize, (r) => r.read(ext.offset, ext.length));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Opening

/** Resolves a `.onnx` file or a folder to the model file's absolute path. */
export function resolveModelPath(pathOrDir: string, variant?: string): string {
  const p = path.resolve(pathOrDir);
  let st;
  try {
    st = statSync(p);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT' || errnoCode(e) === 'ENOTDIR') {
      throw new CheckpointError('missing-model', `ONNX checkpoint not found: ${p} does not exist`, p, { cause: e });
    }
    throw new CheckpointError('missing-model', `cannot access ONNX checkpoint ${p}: ${(e as Error).message}`, p, { cause: e });
  }
  if (st.isDirectory()) {
    const direct = path.join(p, MODEL_FILE);
    if (existsSync(direct) && variant === undefined) return direct;
    const variants = repositoryVariants(p); // Hugging Face / Optimum / transformers.js repository layout
    if (variants) return repositoryModel(p, variants, variant);
    if (variant !== undefined) throw new CheckpointError('missing-model', `variant ${variant} given, but ${p} has no onnx/ folder of variants`, p);
    const onnx = readdirSync(p).filter((f) => f.toLowerCase().endsWith('.onnx'));
    if (onnx.length === 1) return path.join(p, onnx[0]);
    throw new CheckpointError(
      'missing-model',
      onnx.length === 0
        ? `no ${MODEL_FILE} in ${p} (and no other .onnx file): pass a folder holding ${MODEL_FILE} or the .onnx file itself`
        : `no ${MODEL_FILE} in ${p}, and several .onnx files (${onnx.sort().join(', ')}): pass the .onnx file to use`,
      p,
    );
  }
  if (!p.toLowerCase().endsWith('.onnx')) {
    throw new CheckpointError('missing-model', `${p} is not an ONNX model: expected a .onnx file or a folder holding ${MODEL_FILE}`, p);
  }
  return p;
}

/** Side files beside the model; for `<repo>/onnx/model.onnx` also those in `<repo>`. */
function findSideFiles(modelDir: string, tokenizer: string | undefined): Map<string, string> {
  const dirs = [modelDir];
  if (path.basename(modelDir) === 'onnx') dirs.push(path.dirname(modelDir));
  const found = new Map<string, string>();
  for (const name of SIDE_FILES) {
    for (const d of dirs) {
      const f = path.join(d, name);
      if (isFile(f)) {
        found.set(name, f);
        break;
      }
    }
  }
  if (tokenizer !== undefined) {
    let t = path.resolve(tokenizer);
    if (isDir(t)) t = path.join(t, 'tokenizer.json');
    if (!isFile(t)) {
      throw new CheckpointError('missing-tokenizer', `tokenizer not found: ${t} does not exist (give a tokenizer.json file or a folder holding one)`, t);
    }
    found.set('tokenizer.json', t);
    const cfg = path.join(path.dirname(t), 'tokenizer_config.json');
    if (isFile(cfg)) found.set('tokenizer_config.json', cfg);
  }
  return found;
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Parses an external_data integer field (decimal string). */
function parseExtInt(v: string | undefined, key: string, where: string, modelPath: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(Number(v))) {
    throw new CheckpointError('corrupt-model', `${where} in ${modelPath}: external data ${key} '${v}' is not a byte count`, modelPath);
  }
  return Number(v);
}

/** Validates every external reference of the model against the files on disk. */
function resolveExternal(model: ModelProto, modelPath: string): Map<TensorProto, ExternalRef> {
  const dir = path.dirname(modelPath);
  const sizes = new Map<string, number>();
  const refs = new Map<TensorProto, ExternalRef>();
  forEachTensor(model, (t, where) => {
    if (!isExternal(t)) return;
    const location = externalEntry(t, 'location');
    if (!location) throw new CheckpointError('corrupt-model', `${where} in ${modelPath} is marked external but names no location`, modelPath);
    const file = path.resolve(dir, location);
    const rel = path.relative(dir, file);
    if (path.isAbsolute(location) || rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) {
      throw new CheckpointError(
        'corrupt-model',
        `${where} in ${modelPath}: external data location '${location}' is outside the model's folder (only relative paths inside ${dir} are allowed)`,
        modelPath,
      );
    }
    let size = sizes.get(file);
    if (size === undefined) {
      try {
        const st = statSync(file);
        if (!st.isFile()) throw Object.assign(new Error('not a file'), { code: 'EISDIR' });
        size = st.size;
      } catch (e) {
        throw new CheckpointError(
          'missing-external-data',
          `external data file not found: ${file} (referenced by ${where} in ${modelPath})`,
          file,
          { cause: e },
        );
      }
      sizes.set(file, size);
    }
    const offset = parseExtInt(externalEntry(t, 'offset'), 'offset', where, modelPath) ?? 0;
    const expected = byteLengthOf(t.dataType, elementCount(t));
    if (expected === undefined) {
      throw new CheckpointError('unsupported-dtype', `${where} in ${modelPath}: external ${dataTypeName(t.dataType)} tensors are not supported`, modelPath);
    }
    // Without a length the tensor's shape says how many bytes it takes.
    const length = parseExtInt(externalEntry(t, 'length'), 'length', where, modelPath) ?? expected;
    if (offset + length > size) {
      throw new CheckpointError(
        'external-range',
        `${where} in ${modelPath}: bytes [${offset}, ${offset + length}) are outside ${file} (${size} bytes; truncated or wrong file?)`,
        file,
      );
    }
    if (length !== expected) {
      throw new CheckpointError(
        'corrupt-model',
        `${where} in ${modelPath}: external data length ${length} does not match its shape [${dimsOf(t).join(', ')}] ` +
          `of ${dataTypeName(t.dataType)} (${expected} bytes) in ${file}`,
        file,
      );
    }
    refs.set(t, { file, offset, length });
  });
  return refs;
}

/** Checks inline tensors: their data (raw_data or a typed field) has the size their shape needs. */
function checkInline(model: ModelProto, modelPath: string): void {
  forEachTensor(model, (t, where) => {
    if (isExternal(t) || t.dataType === DataType.STRING) return;
    const expected = byteLengthOf(t.dataType, elementCount(t));
    if (expected === undefined) return;
    let got: number | undefined;
    try {
      got = inlineBytes(t)?.length;
    } catch {
      return; // a layout this reader does not convert: reported if the tensor's bytes are ever asked for
    }
    if (got !== expected) {
      throw new CheckpointError(
        'corrupt-model',
        `${where} in ${modelPath} holds ${got ?? 0} bytes of data; its shape [${dimsOf(t).join(', ')}] of ${dataTypeName(t.dataType)} needs ${expected}`,
        modelPath,
      );
    }
  });
}

/**
 * Opens an ONNX checkpoint: `pathOrDir` is a `.onnx` file or a folder holding `model.onnx`. Decodes the model and
 * validates every external data reference; finds tokenizer.json, config.json and friends beside the model.
 */
export function openOnnxCheckpoint(pathOrDir: string, opts: OpenOptions = {}): OnnxCheckpoint {
  const modelPath = resolveModelPath(pathOrDir, opts.variant);
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  let bytes: Uint8Array;
  try {
    bytes = withRangeReader(modelPath, chunkSize, (r) => r.readAll());
  } catch (e) {
    if (e instanceof CheckpointError) throw new CheckpointError('corrupt-model', e.message, modelPath, { cause: e });
    throw new CheckpointError('missing-model', `cannot read ONNX model ${modelPath}: ${(e as Error).message}`, modelPath, { cause: e });
  }
  if (bytes.length === 0) throw new CheckpointError('corrupt-model', `${modelPath} is empty: not an ONNX model`, modelPath);
  let model: ModelProto;
  try {
    model = decodeModel(bytes);
  } catch (e) {
    throw new CheckpointError('corrupt-model', `${modelPath} is not a valid ONNX model (truncated or corrupt): ${(e as Error).message}`, modelPath, { cause: e });
  }
  if (model.opsetImport.length === 0) {
    throw new CheckpointError('corrupt-model', `${modelPath} is not a valid ONNX model (truncated or corrupt): it declares no opset_import`, modelPath);
  }
  checkInline(model, modelPath);
  const external = resolveExternal(model, modelPath);
  const sideFiles = findSideFiles(path.dirname(modelPath), opts.tokenizer);
  return new OnnxCheckpoint(modelPath, model, bytes.length, sideFiles, chunkSize, external, repositoryOf(modelPath));
}
