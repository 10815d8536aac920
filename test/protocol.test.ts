// The shared protocol (src/protocol): every event round-trips through formatEvent/parseEvent and bad lines
// fail with their JSON path; the config schema is well-formed draft-07 that our validator fully understands,
// documents every field, and matches the TypeScript types key for key (habit 9: protocol drift fails a test);
// resolveConfig fills the schema's defaults and names the JSON path of every problem.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CalibrationConfig, ConfigError, EvaluationConfig, KeepDenseConfig, layerMatcher, LayerOverride, layerSelector, LayersConfig,
  parseConfigText, PRUNE_CONFIG_SCHEMA, PruneConfig, resolveConfig, ResolvedConfig, unmatchedLayerPatterns,
} from '../src/protocol/config';
import {
  Event, EVENT_TYPES, EventOf, EventParseError, EventType, formatEvent, makeEvent, parseEvent, PROTOCOL_VERSION, toEvent,
} from '../src/protocol/events';
import { DEVICE_RE, KNOWN_METHODS, MAGNITUDE_GROUPS, NM_MASKS, parsePattern, PATTERN_RE } from '../src/protocol/pruning';
import { ANNOTATION_KEYWORDS, JsonSchema, validateSchema, VALIDATION_KEYWORDS } from '../src/protocol/schema';

const schema = PRUNE_CONFIG_SCHEMA;
const props = (s: JsonSchema | undefined): Record<string, JsonSchema> => s?.properties ?? {};
/** The object branch of a property that is "false or an object" / "an object or null". */
const objectBranch = (s: JsonSchema): JsonSchema => s.anyOf?.find((b) => b.type === 'object') ?? s;

/** Problems of resolveConfig as "path: message" lines ([] when it resolves). */
function problemsOf(raw: unknown, baseDir = '/cfg'): string[] {
  try {
    resolveConfig(raw, baseDir);
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems.map((p) => `${p.path}: ${p.message}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Events

const config: ResolvedConfig = {
  ...resolveConfig({ checkpoint: './stories260K-onnx', calibration: { path: 'data/c.txt', seqlen: 256 }, evaluation: { path: 'data/e.txt' } }, '/w'),
};

/** One event of every type (the mapped type makes a missing type a compile error). */
const SAMPLES: { [T in EventType]: EventOf<T> } = {
  'run.started': makeEvent('run.started', {
    model: { file: '/w/stories260K-onnx/model.onnx', dtype: 'float32', parameters: 260032, externalData: false, maxPositions: 256, inputs: ['input_ids', 'attention_mask'] },
    device: 'cpu',
    deviceNotes: ['cuda: libonnxruntime_providers_cuda.so not found'],
    versions: { prunekit: '0.1.0', 'onnxruntime-node': '1.30.0', node: 'v20.19.0' },
    blocks: [{ index: 0, name: 'layers.0', layers: ['/model/layers.0/self_attn/q_proj/MatMul'] }],
    layers: [
      { name: '/model/layers.0/self_attn/q_proj/MatMul', block: 0, op: 'MatMul', weight: 'onnx::MatMul_123', shape: [64, 64], target: { method: 'apt', pattern: 'unstructured', sparsity: 0.5 } },
      { name: '/lm_head/MatMul', block: null, op: 'MatMul', weight: 'onnx::MatMul_999', shape: [512, 64], target: null },
    ],
    config,
  }),
  'data.loaded': makeEvent('data.loaded', {
    role: 'calibration', file: '/w/data/c.txt', tokens: 200000, windows: 128, seqlen: 256, source: 'cache', cacheFile: '/w/data/.prunekit-cache/c.txt.0123456789abcdef.fedcba9876543210.json', seconds: 0.05,
  }),
  'calibration.progressed': makeEvent('calibration.progressed', { phase: 'hessian', block: 2, done: 64, total: 128 }),
  'layer.pruned': makeEvent('layer.pruned', {
    block: 0, layer: '/model/layers.0/mlp/down_proj/MatMul', shape: [64, 172], method: 'sparsegpt', pattern: '2:4', targetSparsity: 0.5,
    sparsity: 0.4884, loss: 12.5, relLoss: 0.031, dampening: 0.01, seconds: 0.25, notes: ['trailing 0 columns of each row kept dense'],
    refine: { oneShotLoss: 13.5, iterationLosses: [13.1, 12.7], refitLoss: 12.5, kept: 'refined', maskChanges: 41 },
    transfer: { toDevice: 176128, fromDevice: 88064 },
  }),
  'allocation.computed': makeEvent('allocation.computed', {
    rule: 'owl', outlierThreshold: 5, maxDeviation: 0.08, seconds: 1.25,
    blocks: [{ block: 0, name: 'layers.0', outlierRatio: 1.75, offset: -0.04, sparsity: 0.66, parameters: 45056 }],
  }),
  'block.finished': makeEvent('block.finished', {
    block: 0, name: 'layers.0', layers: 7, loss: 40.25, seconds: 1.5, peakRssBytes: 123456789, transfer: { toDevice: 9437184, fromDevice: 2359296 },
  }),
  'evaluation.progressed': makeEvent('evaluation.progressed', { model: 'dense', done: 3, total: 256 }),
  'evaluation.finished': makeEvent('evaluation.finished', { model: 'pruned', perplexity: 17.62, seqlen: 256, windows: 256, predictions: 65280, seconds: 9.5 }),
  'warning.raised': makeEvent('warning.raised', { code: 'data-short', message: 'windows shortened from 2048 to 1000 tokens', file: '/w/data/c.txt' }),
  'run.failed': makeEvent('run.failed', {
    code: 'config-invalid', message: 'the config is invalid', file: '/w/x.prune.json', jsonPath: '$.calibration.nsamples', hint: 'fix the config',
    problems: [{ jsonPath: '$.calibration.nsamples', message: 'must be an integer >= 1 (got 0)' }],
  }),
  'run.finished': makeEvent('run.finished', {
    output: '/w/stories260K-onnx-apt-50',
    totals: { layers: 35, blocks: 5, parameters: 200000, zeros: 100000, sparsity: 0.5, modelSparsity: 0.38, loss: 210.5, densePerplexity: 4.0971, prunedPerplexity: 6.2, seconds: 30, peakRssBytes: 300000000 },
  }),
  'run.cancelled': makeEvent('run.cancelled', { signal: 'SIGINT', lastLayer: '/model/layers.2/mlp/up_proj/MatMul', seconds: 12 }),
};

describe('events', () => {
  test('EVENT_TYPES lists every event of the union', () => {
    assert.deepEqual([...EVENT_TYPES].sort(), Object.keys(SAMPLES).sort());
    for (const e of Object.values(SAMPLES)) assert.equal(e.v, PROTOCOL_VERSION);
  });

  for (const [type, event] of Object.entries(SAMPLES) as [EventType, Event][]) {
    test(`${type} round-trips through formatEvent / parseEvent`, () => {
      const line = formatEvent(event);
      assert.ok(!line.includes('\n'), 'one line');
      assert.deepEqual(parseEvent(line), event);
      assert.deepEqual(parseEvent(`${line}\n`), event, 'a trailing line end is fine');
      assert.deepEqual(toEvent(JSON.parse(line)), event);
    });
  }

  test('optional and nullable fields round-trip when absent or null', () => {
    const { refine: _refine, ...oneShot } = SAMPLES['layer.pruned'];
    const bare: Event[] = [
      makeEvent('run.failed', { code: 'output-exists', message: '/w/out exists' }),
      makeEvent('warning.raised', { code: 'blocks-fallback', message: 'one block per layer', layer: '/a/MatMul' }),
      makeEvent('layer.pruned', { ...oneShot, block: null, loss: null, relLoss: null, dampening: null, notes: [] }),
      makeEvent('run.finished', { output: '/o', totals: { ...SAMPLES['run.finished'].totals, loss: null, densePerplexity: null, prunedPerplexity: null } }),
      makeEvent('run.cancelled', { signal: null, lastLayer: null, seconds: 0 }),
      makeEvent('run.started', { ...SAMPLES['run.started'], config: { ...config, calibration: null, evaluation: false, method: 'magnitude' } }),
    ];
    for (const e of bare) assert.deepEqual(parseEvent(formatEvent(e)), e);
  });

  test('bad lines fail with the JSON path and a clear reason', () => {
    const good = JSON.parse(formatEvent(SAMPLES['layer.pruned'])) as Record<string, unknown>;
    const bad = (value: unknown) => JSON.stringify(value);
    const cases: [string, RegExp][] = [
      ['', /\$: not JSON/],
      ['{"v":1,"type":"layer.pruned"', /\$: not JSON/],
      ['[1,2]', /\$: must be a JSON object with "v" and "type"/],
      [bad({ ...good, v: 2 }), /\$\.v: protocol version 2, but this reader speaks 1: .*rebuild/],
      [bad({ type: 'layer.pruned' }), /\$\.v: protocol version undefined/],
      [bad({ ...good, type: 'layer.done' }), /\$\.type: unknown event type "layer\.done" \(known: run\.started, .*run\.cancelled\)/],
      [bad({ ...good, layer: undefined }), /\$\.layer: is required/],
      [bad({ ...good, shape: [64, -1] }), /\$\.shape\[1\]: must be an integer >= 0 \(got -1\)/],
      [bad({ ...good, shape: [64] }), /\$\.shape: must be an array of 2/],
      [bad({ ...good, method: 'obs' }), /\$\.method: must be one of "apt", "sparsegpt", "wanda", "magnitude" \(got "obs"\)/],
      [bad({ ...good, pattern: '2/4' }), /\$\.pattern: must be "unstructured" or "N:M"/],
      [bad({ ...good, sparsity: 1.5 }), /\$\.sparsity: must be a number in \[0, 1\] \(got 1\.5\)/],
      [bad({ ...good, loss: 'big' }), /\$\.loss: must be a number >= 0 \(got "big"\)/],
      [bad({ ...good, transfer: { toDevice: 1.5, fromDevice: 0 } }), /\$\.transfer\.toDevice: must be an integer >= 0 \(got 1\.5\)/],
      [bad({ ...good, extra: 1 }), /\$\.extra: unknown field/],
      [bad({ ...JSON.parse(formatEvent(SAMPLES['run.failed'])), code: 'oops' }), /\$\.code: must be one of "config-invalid"/],
      [bad({ ...JSON.parse(formatEvent(SAMPLES['run.failed'])), problems: [{ jsonPath: '$' }] }), /\$\.problems\[0\]\.message: is required/],
      [
        bad({ ...JSON.parse(formatEvent(SAMPLES['run.started'])), config: { ...config, calibration: { ...config.calibration, nsamples: 0 } } }),
        /\$\.config\.calibration\.nsamples: must be an integer in \[1, 1048576\] \(got 0\)/,
      ],
      [bad({ ...JSON.parse(formatEvent(SAMPLES['run.started'])), config: { ...config, device: undefined } }), /\$\.config\.device: is required/],
    ];
    for (const [line, message] of cases) {
      assert.throws(() => parseEvent(line), (e: unknown) => e instanceof EventParseError && message.test(e.message), `${line} → ${message}`);
    }
    const e = (() => {
      try {
        parseEvent(bad({ ...good, shape: [64, -1] }));
      } catch (err) {
        return err as EventParseError;
      }
    })();
    assert.equal(e?.path, '$.shape[1]');
    assert.ok(e?.message.includes('"layer.pruned"'), 'the message shows the line');
  });

  test('formatEvent refuses what JSON cannot carry (NaN) and missing fields, where they are produced', () => {
    assert.throws(() => formatEvent({ ...SAMPLES['layer.pruned'], loss: NaN }), /\$\.loss: must be a number >= 0 \(got NaN\)/);
    const noSeconds: Record<string, unknown> = { ...SAMPLES['run.cancelled'] };
    delete noSeconds.seconds;
    assert.throws(() => formatEvent(noSeconds as unknown as Event), /\$\.seconds: is required/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// The schema

/** Every subschema with its JSON-pointer-ish location. */
function walk(s: JsonSchema, at: string, visit: (s: JsonSchema, at: string) => void): void {
  visit(s, at);
  for (const [k, sub] of Object.entries(s.properties ?? {})) walk(sub, `${at}.properties.${k}`, visit);
  if (s.items) walk(s.items, `${at}.items`, visit);
  s.anyOf?.forEach((b, i) => walk(b, `${at}.anyOf[${i}]`, visit));
  if (typeof s.additionalProperties === 'object') walk(s.additionalProperties, `${at}.additionalProperties`, visit);
}

/** Every named property (the fields a user writes), through anyOf branches and array items. */
function walkProperties(s: JsonSchema, path: string, visit: (name: string, p: JsonSchema, path: string) => void): void {
  for (const [k, p] of Object.entries(s.properties ?? {})) {
    visit(k, p, `${path}.${k}`);
    walkProperties(p, `${path}.${k}`, visit);
  }
  if (s.items) walkProperties(s.items, `${path}[]`, visit);
  s.anyOf?.forEach((b) => walkProperties(b, path, visit));
}

describe('prune-config.schema.json', () => {
  test('is draft-07 built only from keywords src/protocol/schema.ts implements, each well-formed', () => {
    assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
    const known = new Set([...VALIDATION_KEYWORDS, ...ANNOTATION_KEYWORDS]);
    const types = new Set(['null', 'boolean', 'integer', 'number', 'string', 'array', 'object']);
    walk(schema, '#', (s, at) => {
      for (const k of Object.keys(s)) assert.ok(known.has(k), `${at}: keyword "${k}" is not implemented by src/protocol/schema.ts`);
      if (s.type !== undefined) for (const t of [s.type].flat()) assert.ok(types.has(t), `${at}: type "${t}"`);
      if (s.enum) assert.ok(s.enum.length > 0 && new Set(s.enum).size === s.enum.length, `${at}: enum must be non-empty and unique`);
      if (s.required) for (const r of s.required) assert.ok(r in (s.properties ?? {}), `${at}: required "${r}" is not a property`);
      if (s.pattern !== undefined) assert.doesNotThrow(() => new RegExp(s.pattern as string, 'u'), `${at}: pattern`);
      for (const k of ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'] as const) {
        if (s[k] !== undefined) assert.equal(typeof s[k], 'number', `${at}: ${k} must be a number (draft-07, not draft-04's boolean)`);
      }
      for (const k of ['minLength', 'minItems'] as const) if (s[k] !== undefined) assert.ok(Number.isInteger(s[k]) && (s[k] as number) >= 0, `${at}: ${k}`);
      if (s.examples !== undefined) assert.ok(Array.isArray(s.examples), `${at}: examples must be an array`);
      if (s.markdownEnumDescriptions) assert.equal(s.markdownEnumDescriptions.length, s.enum?.length, `${at}: one description per enum value`);
    });
  });

  test('every property has a description, and a default or examples, all of them valid', () => {
    const fields: string[] = [];
    walkProperties(schema, '$', (name, p, path) => {
      fields.push(path);
      assert.ok(typeof p.description === 'string' && p.description.length > 10, `${path}: description`);
      if (name === 'checkpoint' || name === 'path' || name === 'match' || path.includes('overrides[]') || name === '$schema') {
        assert.ok(p.examples && p.examples.length > 0, `${path}: examples (no default: required or inherited)`);
      } else if (path.startsWith('$.sweep')) { // a sweep's lists and Slurm options have no value to default to
        assert.ok(Object.hasOwn(p, 'default') || (p.examples && p.examples.length > 0), `${path}: default or examples`);
      } else {
        assert.ok(Object.hasOwn(p, 'default'), `${path}: default`);
      }
      if (Object.hasOwn(p, 'default')) assert.deepEqual(validateSchema(p, p.default, path), [], `${path}: default is valid`);
      for (const x of p.examples ?? []) assert.deepEqual(validateSchema(p, x, path), [], `${path}: example ${JSON.stringify(x)} is valid`);
    });
    assert.ok(fields.length >= 25, `found ${fields.length} fields`);
  });

  test('the defaults of the issue', () => {
    const p = props(schema);
    assert.equal(p.method.default, 'apt');
    assert.equal(p.sparsity.default, 0.5);
    assert.equal(p.pattern.default, 'unstructured');
    assert.equal(p.blockSize.default, 128);
    assert.equal(p.dampening.default, 0.01);
    assert.equal(p.nmMask.default, 'joint');
    assert.equal(p.device.default, 'auto');
    assert.deepEqual(p.keepDense.default, { lmHead: true, depthwiseConv: true });
    const cal = props(p.calibration);
    assert.equal(cal.nsamples.default, 128);
    assert.equal(cal.seed.default, 0);
    assert.equal(cal.seqlen.default, null);
    assert.match(cal.seqlen.description ?? '', /min\(2048, the model's maximum positions\)/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Drift between the TypeScript types and the schema. Each map must list exactly the keys of its type (the
// compiler checks: a missing key or an extra one does not compile); the tests compare them with the schema.

const CONFIG_KEYS: Record<keyof PruneConfig, true> = {
  $schema: true, checkpoint: true, output: true, variant: true, tokenizer: true, method: true, sparsity: true, pattern: true, blockSize: true,
  dampening: true, nmMask: true, magnitudeGroup: true, calibration: true, evaluation: true, layers: true, keepDense: true,
  blockPattern: true, device: true, threads: true, overwrite: true, allocation: true, owl: true, refine: true, tokenCache: true, sweep: true,
};
const RESOLVED_KEYS: Record<keyof ResolvedConfig, true> = {
  checkpoint: true, output: true, variant: true, tokenizer: true, method: true, sparsity: true, pattern: true, blockSize: true, dampening: true,
  nmMask: true, magnitudeGroup: true, calibration: true, evaluation: true, layers: true, keepDense: true, blockPattern: true,
  device: true, threads: true, overwrite: true, allocation: true, owl: true, refine: true, tokenCache: true,
};
const CALIBRATION_KEYS: Record<keyof CalibrationConfig, true> = { path: true, nsamples: true, seqlen: true, seed: true, skipTokens: true };
const EVALUATION_KEYS: Record<keyof EvaluationConfig, true> = { path: true, seqlen: true, maxWindows: true };
const LAYERS_KEYS: Record<keyof LayersConfig, true> = { include: true, exclude: true, overrides: true };
const OVERRIDE_KEYS: Record<keyof LayerOverride, true> = { match: true, method: true, sparsity: true, pattern: true };
const KEEP_DENSE_KEYS: Record<keyof KeepDenseConfig, true> = { lmHead: true, depthwiseConv: true };

describe('protocol drift: TypeScript types against the schema', () => {
  const keys = (o: object) => Object.keys(o).sort();
  const p = props(schema);

  test('PruneConfig and its parts have exactly the schema properties', () => {
    assert.deepEqual(keys(CONFIG_KEYS), keys(p));
    assert.deepEqual(keys(CALIBRATION_KEYS), keys(props(objectBranch(p.calibration))));
    assert.deepEqual(keys(EVALUATION_KEYS), keys(props(objectBranch(p.evaluation))));
    assert.deepEqual(keys(LAYERS_KEYS), keys(props(p.layers)));
    assert.deepEqual(keys(OVERRIDE_KEYS), keys(props(props(p.layers).overrides.items)));
    assert.deepEqual(keys(KEEP_DENSE_KEYS), keys(props(p.keepDense)));
    const required = (s: JsonSchema) => [...(s.required ?? [])].sort();
    assert.deepEqual(required(schema), ['checkpoint'], 'PruneConfig: only checkpoint is required');
    assert.deepEqual(required(objectBranch(p.calibration)), ['path']);
    assert.deepEqual(required(objectBranch(p.evaluation)), ['path']);
    assert.deepEqual(required(props(p.layers).overrides.items as JsonSchema), ['match']);
  });

  test('a resolved config has every key of ResolvedConfig, at every level, and nothing else', () => {
    const c = resolveConfig({ checkpoint: 'm', calibration: { path: 'c.txt' }, evaluation: { path: 'e.txt' } }, '/w');
    assert.deepEqual(keys(c), keys(RESOLVED_KEYS));
    assert.deepEqual(keys(c.calibration as object), keys(CALIBRATION_KEYS));
    assert.deepEqual(keys(c.evaluation as object), keys(EVALUATION_KEYS));
    assert.deepEqual(keys(c.layers), keys(LAYERS_KEYS));
    assert.deepEqual(keys(c.keepDense), keys(KEEP_DENSE_KEYS));
    assert.deepEqual(validateSchema(schema, c), [], 'the resolved form is itself a valid config');
  });

  test('enumerations and patterns are the protocol constants', () => {
    assert.deepEqual(p.method.enum, [...KNOWN_METHODS]);
    assert.deepEqual(p.nmMask.enum, [...NM_MASKS]);
    assert.deepEqual(p.magnitudeGroup.enum, [...MAGNITUDE_GROUPS]);
    assert.equal(p.pattern.pattern, PATTERN_RE.source);
    assert.equal(p.device.pattern, DEVICE_RE.source);
  });

  test('an override validates method, sparsity and pattern exactly as the top level does', () => {
    const validation = (s: JsonSchema) => Object.fromEntries(Object.entries(s).filter(([k]) => VALIDATION_KEYWORDS.includes(k)));
    const o = props(props(p.layers).overrides.items);
    for (const k of ['method', 'sparsity', 'pattern']) assert.deepEqual(validation(o[k]), validation(p[k]), k);
  });
});

// ---------------------------------------------------------------------------------------------------------
// resolveConfig

describe('resolveConfig', () => {
  test('fills every default and resolves paths against the config folder', () => {
    const c = resolveConfig({ $schema: './s.json', checkpoint: './models/stories260K-onnx', calibration: { path: '../data/c.txt' } }, '/work/cfg');
    assert.deepEqual(c, {
      checkpoint: '/work/cfg/models/stories260K-onnx',
      output: '/work/cfg/models/stories260K-onnx-apt-50',
      variant: null,
      tokenizer: '/work/cfg/models/stories260K-onnx/tokenizer.json',
      method: 'apt',
      sparsity: 0.5,
      pattern: 'unstructured',
      blockSize: 128,
      dampening: 0.01,
      nmMask: 'joint',
      magnitudeGroup: 'layer',
      allocation: 'uniform',
      owl: { outlierThreshold: 5, maxDeviation: 0.08 },
      refine: { iterations: 0 },
      calibration: { path: '/work/data/c.txt', nsamples: 128, seqlen: null, seed: 0, skipTokens: 0 },
      evaluation: false,
      layers: { include: ['*'], exclude: [], overrides: [] },
      keepDense: { lmHead: true, depthwiseConv: true },
      blockPattern: null,
      device: 'auto',
      threads: 0,
      overwrite: false,
      tokenCache: true,
    });
  });

  test('keeps what is given, fills partial objects, leaves the input untouched', () => {
    const raw = {
      checkpoint: '/abs/model.onnx', output: 'out', tokenizer: 'tok/tokenizer.json', method: 'sparsegpt', pattern: '2:4',
      calibration: { path: 'c.json', nsamples: 16, seqlen: 256, seed: 7, skipTokens: 65536 },
      evaluation: { path: 'e.txt', maxWindows: 40 }, keepDense: { lmHead: false }, layers: { exclude: ['*layers.0/*'] },
      device: 'cuda:1', threads: 4,
    };
    const before = JSON.stringify(raw);
    const c = resolveConfig(raw, '/cfg');
    assert.equal(JSON.stringify(raw), before);
    assert.equal(c.checkpoint, '/abs/model.onnx');
    assert.equal(c.output, '/cfg/out');
    assert.equal(c.tokenizer, '/cfg/tok/tokenizer.json');
    assert.deepEqual(c.calibration, { path: '/cfg/c.json', nsamples: 16, seqlen: 256, seed: 7, skipTokens: 65536 });
    assert.deepEqual(c.evaluation, { path: '/cfg/e.txt', seqlen: null, maxWindows: 40 });
    assert.deepEqual(c.keepDense, { lmHead: false, depthwiseConv: true });
    assert.deepEqual(c.layers, { include: ['*'], exclude: ['*layers.0/*'], overrides: [] });
    assert.equal(c.device, 'cuda:1');
  });

  test('default output: beside a .onnx file after its name, beside a folder after it; tokenizer beside the model', () => {
    const c1 = resolveConfig({ checkpoint: 'm/model.onnx', method: 'magnitude', pattern: '2:4' }, '/w');
    assert.equal(c1.output, '/w/m/model-magnitude-2of4');
    assert.equal(c1.tokenizer, '/w/m/tokenizer.json');
    const c2 = resolveConfig({ checkpoint: 'C:\\models\\llama\\', method: 'magnitude', sparsity: 0.7 }, 'D:\\cfg');
    assert.equal(c2.checkpoint, 'C:\\models\\llama');
    assert.equal(c2.output, 'C:\\models\\llama-magnitude-70');
    const c3 = resolveConfig({ checkpoint: 'llama', method: 'magnitude' }, 'D:\\cfg\\sub');
    assert.equal(c3.checkpoint, 'D:\\cfg\\sub\\llama');
    assert.equal(c3.tokenizer, 'D:\\cfg\\sub\\llama\\tokenizer.json');
  });

  test('errors name the JSON path of every problem', () => {
    const base = { checkpoint: 'm', calibration: { path: 'c.txt' } };
    const cases: [unknown, string[]][] = [
      [[], ['$: must be an object (got an array)']],
      [{}, [/^\$\.checkpoint: is required \(the model to prune: a \.onnx file, .*\)$/.source]], // the schema's description, whatever its wording
      [{ ...base, calibration: { path: 'c.txt', nsamples: 0 } }, ['$.calibration.nsamples: must be an integer in [1, 1048576] (got 0)']],
      [{ ...base, calibration: { path: 'c.txt', nsamples: 1.5 } }, ['$.calibration.nsamples: must be an integer in [1, 1048576] (got 1.5)']],
      [{ ...base, calibration: { nsamples: 8 } }, ['$.calibration.path: is required (text to calibrate on: .txt (the whole file, tokenized with the tokenizer), .jsonl (the "text" field of each line, one document each) or .json (token ids: a JSON array of integers, no tokenizer needed))']],
      [{ ...base, method: 'sparsgpt' }, ['$.method: must be one of "apt", "sparsegpt", "wanda", "magnitude" (got "sparsgpt"); did you mean "sparsegpt"?']],
      [{ ...base, sparsity: 1 }, ['$.sparsity: must be a number in (0, 1) (got 1)']],
      [{ ...base, sparsity: '50%' }, ['$.sparsity: must be a number in (0, 1) (got "50%")']],
      [{ ...base, pattern: '2-4' }, ['$.pattern: must be "unstructured" or "N:M" with N < M (N of every M consecutive weights zeroed), e.g. "2:4" (got "2-4")']],
      [{ ...base, pattern: '4:4' }, ['$.pattern: "4:4": N must be below M (N of every M consecutive weights are zeroed)']],
      [{ ...base, calibraton: {} }, ['$.calibraton: unknown property; did you mean "calibration"?']],
      [{ ...base, evaluation: 3 }, ['$.evaluation: must be false or an object (got 3)']],
      [{ ...base, evaluation: true }, ['$.evaluation: must be false (got true)']],
      [{ ...base, evaluation: { seqlen: 0 } }, ['$.evaluation.path: is required (text to measure perplexity on (.txt, .jsonl or a .json token-id file, as calibration.path))', '$.evaluation.seqlen: must be an integer in [1, 1048576] or null (got 0)']],
      [{ ...base, layers: { overrides: [{ match: '*mlp*' }, { match: '*attn*', sparsity: 2 }] } }, ['$.layers.overrides[1].sparsity: must be a number in (0, 1) (got 2)']],
      [{ ...base, layers: { overrides: [{ sparsity: 0.6 }] } }, ['$.layers.overrides[0].match: is required (the layers this entry applies to: a glob, or "re:" and a regular expression, as in include)']],
      [{ ...base, layers: { overrides: [{ match: '*', pattern: '8:4' }] } }, ['$.layers.overrides[0].pattern: "8:4": N must be below M (N of every M consecutive weights are zeroed)']],
      [{ ...base, layers: { exclude: ['*', 're:(q_proj'] } }, [/^\$\.layers\.exclude\[1\]: not a valid regular expression: .*/.source]],
      [{ ...base, layers: { include: 'all' } }, ['$.layers.include: must be an array (got "all")']],
      [{ ...base, layers: { include: [''] } }, ['$.layers.include[0]: must be a non-empty string']],
      [{ ...base, device: 'gpu' }, ['$.device: must be "auto", "cpu", "cuda", "cuda:N" or "webgpu" (got "gpu")']],
      [{ ...base, threads: -1 }, ['$.threads: must be an integer in [0, 4096] (got -1)']],
      [{ ...base, blockPattern: 'layers\\.\\d+' }, ['$.blockPattern: needs a capture group for the block index, e.g. "layers\\.(\\d+)\\." (got "layers\\.\\d+")']],
      [{ ...base, blockPattern: 'layers(' }, [/^\$\.blockPattern: not a valid regular expression: .*/.source]],
      [{ checkpoint: 'm' }, ['$.calibration: is required: method "apt" ($.method) needs calibration data; add e.g. {"path": "calibration.txt"}']],
      [{ checkpoint: 'm', method: 'magnitude', layers: { overrides: [{ match: '*', method: 'wanda' }] } }, ['$.calibration: is required: method "wanda" ($.layers.overrides[0].method) needs calibration data; add e.g. {"path": "calibration.txt"}']],
      [{ ...base, output: '.' , checkpoint: '.' }, ['$.output: must be a new folder, not the input model\'s (/cfg)']],
      [{ ...base, keepDense: { lmHead: 'no' } }, ['$.keepDense.lmHead: must be true or false (got "no")']],
      [{ ...base, keepDense: { embedding: false } }, ['$.keepDense.embedding: removed: the token embedding is a lookup table, not a linear layer, so it is never pruned (the flag did nothing); delete this key']],
      [
        { ...base, sparsity: 0, blockSize: 0, dampening: -1, overwrite: 'yes' },
        ['$.sparsity: must be a number in (0, 1) (got 0)', '$.blockSize: must be an integer in [1, 65536] (got 0)', '$.dampening: must be a number >= 0 (got -1)', '$.overwrite: must be true or false (got "yes")'],
      ],
    ];
    for (const [raw, expected] of cases) {
      const got = problemsOf(raw);
      assert.equal(got.length, expected.length, `${JSON.stringify(raw)}: ${got.join(' | ')}`);
      got.forEach((g, i) => {
        if (expected[i].startsWith('^')) assert.match(g, new RegExp(expected[i]));
        else assert.equal(g, expected[i]);
      });
    }
  });

  test('magnitude alone needs no calibration data', () => {
    assert.deepEqual(problemsOf({ checkpoint: 'm', method: 'magnitude' }), []);
    assert.equal(resolveConfig({ checkpoint: 'm', method: 'magnitude' }, '/w').calibration, null);
  });

  test('ConfigError lists the problems one a line; parseConfigText gives line and column', () => {
    assert.throws(() => resolveConfig({ checkpoint: 1, method: 'x' }, '/w'), (e: unknown) => e instanceof ConfigError && e.message.split('\n').length === 2);
    assert.deepEqual(parseConfigText('{"checkpoint": "m"}'), { checkpoint: 'm' });
    assert.throws(() => parseConfigText('{\n  "checkpoint": "m",\n}'), (e: unknown) => e instanceof ConfigError && e.problems[0].path === '$' && /not valid JSON: .*line 3/.test(e.message));
  });
});

// ---------------------------------------------------------------------------------------------------------
// Layer selection, patterns, paths

describe('layer selection', () => {
  const names = [
    '/model/layers.0/self_attn/q_proj/MatMul', '/model/layers.0/mlp/down_proj/MatMul', '/model/layers.1/self_attn/q_proj/MatMul',
    '/model/layers.1/mlp/down_proj/MatMul', '/model/layers.10/mlp/down_proj/MatMul',
  ];

  test('globs match the whole name (* across / and .), re: searches', () => {
    assert.ok(layerMatcher('*self_attn*')(names[0]));
    assert.ok(!layerMatcher('self_attn')(names[0]), 'a glob without * must match the whole name');
    assert.ok(layerMatcher('/model/layers.1/*')(names[2]));
    assert.ok(!layerMatcher('/model/layers.1/*')(names[4]), '. is literal in a glob');
    assert.ok(layerMatcher('/model/layers.?/mlp/*')(names[1]));
    assert.ok(!layerMatcher('/model/layers.?/mlp/*')(names[4]));
    assert.ok(layerMatcher('re:layers\\.1\\d*/mlp')(names[4]));
    assert.ok(layerMatcher('re:^/model/layers\\.1/')(names[2]));
    assert.throws(() => layerMatcher('re:('), /not a valid regular expression/);
  });

  test('include, exclude and overrides (later wins) give each layer its target', () => {
    const c = resolveConfig({
      checkpoint: 'm', calibration: { path: 'c.txt' }, sparsity: 0.6,
      layers: { exclude: ['*layers.0/*'], overrides: [{ match: '*mlp*', method: 'sparsegpt', pattern: '2:4' }, { match: '*layers.10/*', sparsity: 0.7, pattern: 'unstructured' }] },
    }, '/w');
    const target = layerSelector(c);
    assert.equal(target(names[0]), null);
    assert.equal(target(names[1]), null);
    assert.deepEqual(target(names[2]), { method: 'apt', pattern: { kind: 'unstructured', sparsity: 0.6 }, sparsity: 0.6 });
    assert.deepEqual(target(names[3]), { method: 'sparsegpt', pattern: { kind: 'nm', n: 2, m: 4 }, sparsity: 0.5 });
    assert.deepEqual(target(names[4]), { method: 'sparsegpt', pattern: { kind: 'unstructured', sparsity: 0.7 }, sparsity: 0.7 });
  });

  test('patterns that match no layer are reported with their JSON paths', () => {
    const c = resolveConfig({ checkpoint: 'm', calibration: { path: 'c.txt' }, layers: { include: ['*'], exclude: ['*k_proj*'], overrides: [{ match: '*mlp*', sparsity: 0.6 }, { match: 're:gate', sparsity: 0.6 }] } }, '/w');
    assert.deepEqual(unmatchedLayerPatterns(c, names).map((p) => p.path), ['$.layers.exclude[0]', '$.layers.overrides[1].match']);
  });

  test('parsePattern', () => {
    assert.deepEqual(parsePattern('unstructured', 0.5), { kind: 'unstructured', sparsity: 0.5 });
    assert.deepEqual(parsePattern('4:8', 0.5), { kind: 'nm', n: 4, m: 8 });
    assert.throws(() => parsePattern('2:2', 0.5), /N must be below M/);
    assert.throws(() => parsePattern('0:4', 0.5), /not a pattern/);
    assert.throws(() => parsePattern('unstructured', 1), /sparsity must be in \(0, 1\)/);
  });
});

describe('config paths', () => {
  test('relative paths resolve against the config folder, normalized (backslashes too: a config written on Windows); absolute ones pass through', () => {
    const c = resolveConfig({ checkpoint: 'models/../m/tiny.onnx', method: 'magnitude', calibration: { path: 'data\\c.txt' }, evaluation: { path: '/abs//e.txt' } }, '/w/x');
    assert.equal(c.checkpoint, '/w/x/m/tiny.onnx');
    assert.equal(c.calibration?.path, '/w/x/data/c.txt');
    assert.equal(c.evaluation && c.evaluation.path, '/abs/e.txt');
    assert.equal(c.tokenizer, '/w/x/m/tokenizer.json', 'beside a .onnx file');
    assert.equal(c.output, '/w/x/m/tiny-magnitude-50', 'beside the model, named by its stem, method and sparsity');
    assert.equal(resolveConfig({ checkpoint: '/m/stories/', method: 'magnitude', pattern: '2:4' }, '/w').output, '/m/stories-magnitude-2of4');
    const w = resolveConfig({ checkpoint: '..\\m/./tiny.onnx', method: 'magnitude', calibration: { path: 'D:/data/c.txt' }, evaluation: { path: '\\\\srv\\share\\e.txt' } }, 'C:\\cfg\\sub');
    assert.deepEqual([w.checkpoint, w.calibration?.path, w.evaluation && w.evaluation.path], ['C:\\cfg\\m\\tiny.onnx', 'D:\\data\\c.txt', '\\\\srv\\share\\e.txt'], 'Windows paths by their own rules');
  });
});
