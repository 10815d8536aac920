// Editing *.prune.json files: the jsonc scanner and cursor locations, completions and hovers from the real
// `prunekit inspect --json` of the stories260K fixture, diagnostics on exact ranges, which configs point at a
// checkpoint, and generated configs that resolveConfig accepts. Everything here is the vscode-free logic under
// src/extension/config/ (the VS Code glue only converts offsets to ranges).

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync, realpathSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseConfigText, readJsonc, resolveConfig } from '../src/protocol/config';
import { findNodeAtLocation, getNodeValue, JSONPath, Node, parseTree } from 'jsonc-parser';
import { openOnnxCheckpoint } from '../src/backend/formats/onnxCheckpoint';
import { discoverLayers } from '../src/backend/pipeline/layers';
import { configDiagnostics, parseJsonPath, PathKind } from '../src/extension/config/diagnostics';
import { checkpointKey, configCheckpoint, configsForCheckpoint, newConfigPath } from '../src/extension/config/discovery';
import { completionPlace, completionsAt, hoverAt, locationAt } from '../src/extension/config/editing';
import { InspectCache, InspectError, Launcher, modelFileOf } from '../src/extension/config/inspectCache';
import { blockPatternSuggestions, configSummary, InspectInfo } from '../src/extension/config/layerInfo';
import { CALIBRATION_PLACEHOLDER, guessDataFile, newConfigText, NewConfigSettings } from '../src/extension/config/template';
import { fixturesDir, repoRoot } from './helpers/realLayers';

const ckptDir = path.join(fixturesDir, 'stories260K-onnx');
const dataDir = path.join(fixturesDir, 'data');

/** `prunekit <args>` from the sources, as the extension runs dist/backend.js. */
let launches = 0;
const tsxLauncher: Launcher = (cliArgs) => {
  launches++;
  return { command: process.execPath, args: ['--import', 'tsx', path.join(repoRoot, 'src', 'backend', 'cli', 'main.ts'), ...cliArgs] };
};

const kindOf = (p: string): PathKind => {
  try {
    return statSync(p).isDirectory() ? 'folder' : 'file';
  } catch {
    return undefined;
  }
};

/** The offset of the n-th occurrence of `marker` in text, plus `shift`. */
function at(text: string, marker: string, shift = 0): number {
  const i = text.indexOf(marker);
  assert.ok(i >= 0, `marker ${marker} not in text`);
  return i + shift;
}

let info: InspectInfo;
let tmp: string;
const cache = new InspectCache({ launcher: tsxLauncher, timeoutMs: 60_000 });

before(async () => {
  tmp = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'prunekit-config-')));
  info = await cache.get(ckptDir);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------------------

describe('jsonc scanner', () => {
  const text = [
    '{',
    '  // the model',
    '  "checkpoint": "./m", /* inline */',
    '  "layers": {',
    '    "include": ["layers.0.*", "x"],',
    '    "overrides": [{ "match": "*.mlp.*", "sparsity": 0.6 }, { "ma',
  ].join('\n');

  test('a config nested 300 000 levels deep gets no tree, location, typing scan or parse: no stack overflow, in bounded time', () => {
    const deep = `{"checkpoint": "m", "layers": {"include": [${'['.repeat(300_000)}`;
    const start = performance.now();
    assert.equal(locationAt(deep, 40), undefined);
    assert.equal(completionPlace(deep, 40), undefined);
    assert.equal(configCheckpoint(deep, '/w/a.prune.json'), undefined);
    assert.throws(() => parseConfigText(deep), /^ConfigError: \$: nests deeper than 64 levels; a prune config has at most 32$/);
    assert.ok(performance.now() - start < 1000, `took ${(performance.now() - start).toFixed(0)} ms`);
    // Just under the bound, the same text is parsed as usual.
    assert.equal(configCheckpoint(`{"checkpoint": "m", "x": ${'['.repeat(60)}${']'.repeat(60)}}`, '/w/a.prune.json'), path.resolve('/w', 'm'));
  });

  test('comments become spaces at the same offsets; parseConfigText accepts them and still rejects trailing commas', () => {
    const blank = readJsonc('{"a": 1, // c\n/* x\ny */ "b": "//not a comment"}').plain;
    assert.equal(blank, '{"a": 1,     \n    \n     "b": "//not a comment"}');
    assert.deepEqual(parseConfigText('{\n  // c\n  "checkpoint": "m" /* d */\n}'), { checkpoint: 'm' });
    assert.throws(() => parseConfigText('{\n  // c\n  "checkpoint": "m",\n}'), /line 4/);
  });

  test('the cursor location: path, key or value, and the string it is in', () => {
    assert.deepEqual(locationAt(text, at(text, '"./m"', 2)), { path: ['checkpoint'], isKey: false, string: { offset: at(text, '"./m"'), end: at(text, '"./m"', 5), value: './m', closed: true } });
    assert.deepEqual(locationAt(text, at(text, 'layers.0.*', 3))?.path, ['layers', 'include', 0]);
    assert.deepEqual(locationAt(text, at(text, '"x"', 1))?.path, ['layers', 'include', 1]);
    assert.deepEqual(locationAt(text, at(text, '*.mlp.*'))?.path, ['layers', 'overrides', 0, 'match']);
    assert.deepEqual(locationAt(text, at(text, '0.6'))?.path, ['layers', 'overrides', 0, 'sparsity']);
    const end = locationAt(text, text.length);
    assert.deepEqual([end?.path, end?.isKey, end?.string?.closed], [['layers', 'overrides', 1, 'ma'], true, false]);
    assert.equal(locationAt(text, at(text, 'the model')), undefined, 'inside a comment');
    assert.deepEqual(locationAt(text, at(text, '"include"', 2))?.isKey, true);
  });

  test('inside every string of a real config, the cursor location is that string and its path in the tree', () => {
    const doc = newConfigText({
      configPath: path.join(fixturesDir, 'x.prune.json'), checkpoint: ckptDir,
      settings: { method: 'apt', sparsity: 0.5, pattern: '2:4', device: 'cuda:1', calibrationPath: path.join(dataDir, 'a "quoted" \\ name.txt'), evaluationPath: '', outputDirectory: '' },
    }).replace('"overrides": []', '"overrides": [{ "match": "*.mlp.*", /* c */ "sparsity": 0.6 }, { "match": "re:\\\\.q_proj$" }]');
    const strings: [JSONPath, Node][] = [];
    const walk = (node: Node | undefined, at: JSONPath): void => {
      if (node?.type === 'string') strings.push([at, node]);
      if (node?.type === 'array') node.children?.forEach((x, i) => walk(x, [...at, i]));
      if (node?.type === 'object') for (const p of node.children ?? []) walk(p.children?.[1], [...at, p.children?.[0].value as string]);
    };
    const tree = parseTree(doc) as Node;
    walk(tree, []);
    assert.equal(strings.length, 8, 'checkpoint, method, pattern, calibration.path, include[0], device, two matches');
    assert.deepEqual(JSON.parse(JSON.stringify(getNodeValue(tree))), parseConfigText(doc), 'the tree holds what JSON.parse reads');
    for (const [at, node] of strings) {
      for (let offset = node.offset + 1; offset < node.offset + node.length; offset++) {
        const loc = locationAt(doc, offset);
        assert.deepEqual([loc?.path, loc?.isKey, loc?.string?.value], [at, false, node.value], `offset ${offset} in ${doc.slice(node.offset, node.offset + node.length)}`);
      }
    }
  });

  test('the tolerant tree finds nodes by JSON path, even in a half-typed file', () => {
    const tree = parseTree(text) as Node;
    assert.deepEqual(parseJsonPath('$.layers.overrides[0].match'), ['layers', 'overrides', 0, 'match']);
    assert.deepEqual(parseJsonPath('$["x-y"][2]'), ['x-y', 2]);
    const node = findNodeAtLocation(tree, parseJsonPath('$.layers.overrides[0].match'));
    assert.equal(node?.type === 'string' && node.value, '*.mlp.*');
    assert.equal(text.slice(node?.offset, (node?.offset ?? 0) + (node?.length ?? 0)), '"*.mlp.*"');
    assert.equal(findNodeAtLocation(tree, ['layers', 'include', 1])?.offset, at(text, '"x"'));
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('inspect, run by the real backend and cached', () => {
  test('the fixture has 35 prunable layers in 5 blocks; the LM head is left dense', () => {
    assert.equal(info.layers.length, 35);
    assert.equal(info.blocks.length, 5);
    assert.deepEqual(info.skipped.map((s) => s.name), ['lm_head']);
    assert.deepEqual(info.layers.find((l) => l.name === 'layers.3.mlp.down_proj')?.shape, [64, 172]);
  });

  test('one run per checkpoint and model mtime, however the checkpoint is named; a touched model is inspected again', async () => {
    const dir = path.join(tmp, 'copy');
    mkdirSync(dir);
    for (const f of ['model.onnx', 'tokenizer.json', 'config.json']) copyFileSync(path.join(ckptDir, f), path.join(dir, f));
    const before = launches;
    const a = await cache.get(dir);
    const b = await cache.get(path.join(dir, 'model.onnx'));
    assert.equal(a, b, 'the same answer object');
    assert.equal(launches - before, 1);
    const future = new Date(Date.now() + 60_000);
    utimesSync(path.join(dir, 'model.onnx'), future, future);
    const c = await cache.get(dir);
    assert.equal(launches - before, 2);
    assert.deepEqual(c.layers, a.layers);
  });

  test('the model file of a checkpoint is found as the backend finds it', () => {
    const root = path.join(tmp, 'layouts');
    const layouts = [
      ['plain', ['model.onnx']], ['hf/onnx', ['model.onnx']], ['single', ['decoder.onnx']], ['two', ['a.onnx', 'b.onnx']], ['none', ['x.txt']],
      ['st', ['config.json', 'model.safetensors', 'tokenizer.json']], ['shards', ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']],
      ['weightsOnly', ['model.safetensors']],
    ] as const;
    for (const [dir, files] of layouts) {
      mkdirSync(path.join(root, dir), { recursive: true });
      for (const f of files) writeFileSync(path.join(root, dir, f), '');
    }
    assert.equal(modelFileOf(path.join(root, 'plain')), path.join(root, 'plain', 'model.onnx'));
    assert.equal(modelFileOf(path.join(root, 'hf')), path.join(root, 'hf', 'onnx', 'model.onnx'));
    assert.equal(modelFileOf(path.join(root, 'single')), path.join(root, 'single', 'decoder.onnx'));
    assert.throws(() => modelFileOf(path.join(root, 'two')), /several \.onnx files \(a\.onnx, b\.onnx\)/);
    assert.throws(() => modelFileOf(path.join(root, 'none')), /no model in .*none: neither model\.onnx .* nor a Hugging Face checkpoint/);
    assert.equal(modelFileOf(path.join(root, 'st')), path.join(root, 'st', 'model.safetensors'));
    assert.equal(modelFileOf(path.join(root, 'shards')), path.join(root, 'shards', 'model.safetensors.index.json'));
    assert.throws(() => modelFileOf(path.join(root, 'weightsOnly')), /no model in .*weightsOnly/, 'safetensors without config.json is no checkpoint');
    assert.throws(() => modelFileOf(path.join(root, 'none', 'x.txt')), /is not an ONNX model/);
  });

  test('failures say what went wrong: a missing checkpoint, a backend error, a timeout', async () => {
    await assert.rejects(cache.get(path.join(tmp, 'nope')), (e: unknown) => e instanceof InspectError && /nope does not exist/.test(e.message));
    const notOnnx = path.join(tmp, 'notonnx');
    mkdirSync(notOnnx);
    writeFileSync(path.join(notOnnx, 'model.onnx'), 'not a protobuf');
    await assert.rejects(cache.get(notOnnx), (e: unknown) => e instanceof InspectError && /^prunekit inspect .*notonnx failed: prunekit: /.test(e.message));
    const slow = new InspectCache({ launcher: tsxLauncher, timeoutMs: 50 });
    await assert.rejects(slow.get(ckptDir), (e: unknown) => e instanceof InspectError && /timed out after 50 ms/.test(e.message));
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('completions and hovers from the real layer names', () => {
  const text = [
    '{',
    '  "checkpoint": "./stories260K-onnx",',
    '  "blockPattern": "",',
    '  "layers": {',
    '    "include": ["layers.0.", ],',
    '    "exclude": [],',
    '    "overrides": [{ "match": "*.mlp.*" }, { "match": "layers.3.mlp.down_proj" }]',
    '  }',
    '}',
  ].join('\n');

  test('layers.include offers every layer by name and globs over blocks and layer kinds, replacing the string contents', () => {
    const r = completionsAt(text, at(text, 'layers.0."', 9), info);
    assert.ok(r);
    assert.deepEqual([r.place.offset, r.place.end, r.place.quoted], [at(text, 'layers.0."'), at(text, 'layers.0."', 9), false]);
    const labels = r.items.map((i) => i.label);
    for (const l of ['layers.0.self_attn.q_proj', 'layers.4.mlp.down_proj', '*', 'layers.0.*', '*.mlp.*', '*.self_attn.*', '*.mlp.down_proj']) assert.ok(labels.includes(l), l);
    assert.equal(r.items.filter((i) => i.kind === 'layer').length, 35);
    assert.ok(!labels.includes('lm_head'), 'left dense by keepDense.lmHead');
    assert.equal(r.items.find((i) => i.label === 'layers.0.*')?.detail, '7 layers');
    assert.equal(r.items.find((i) => i.label === '*.mlp.*')?.detail, '15 layers');
    assert.equal(r.items.find((i) => i.label === 'layers.0.mlp.down_proj')?.detail, '64×172 MatMul');
    assert.ok(completionsAt(text, at(text, 'layers.0."', 9), info, { lmHead: false })?.items.some((i) => i.label === 'lm_head'), 'offered when keepDense.lmHead is false');
  });

  test('after a comma in the array and in overrides[].match too; not in other fields', () => {
    const afterComma = completionsAt(text, at(text, ', ]', 2), info);
    assert.equal(afterComma?.place.quoted, true);
    assert.equal(afterComma?.items.find((i) => i.label === 'layers.1.*')?.insertText, '"layers.1.*"');
    assert.equal(completionPlace(text, at(text, '*.mlp.*', 1))?.slot, 'layerPattern');
    assert.equal(completionPlace(text, at(text, 'stories260K', 1)), undefined);
    assert.equal(completionPlace(text, at(text, '"include"', 1)), undefined, 'a key');
  });

  test('blockPattern offers regexes escaped for JSON whose capture group the backend accepts, finding the 5 blocks', () => {
    const r = completionsAt(text, at(text, '"blockPattern": ""', 17), info);
    assert.equal(r?.place.slot, 'blockPattern');
    const first = r?.items[0];
    assert.deepEqual([first?.label, first?.insertText, first?.detail], ['layers\\.(\\d+)', 'layers\\\\.(\\\\d+)', '5 blocks, 35 layers']);
    const model = openOnnxCheckpoint(ckptDir).model;
    const d = discoverLayers(model, { blockPattern: blockPatternSuggestions(info)[0].label });
    assert.deepEqual(d.blocks.map((b) => b.layers.length), [7, 7, 7, 7, 7]);
  });

  test('hover: a layer name shows shape, op, block and weight initializer; a glob lists what it matches', () => {
    const h = hoverAt(text, at(text, 'layers.3.mlp.down_proj', 4), info);
    const layer = info.layers.find((l) => l.name === 'layers.3.mlp.down_proj');
    assert.ok(h && layer);
    assert.match(h.markdown, /64×172 \(11,008 weights\)/);
    assert.match(h.markdown, /op: `MatMul`/);
    assert.match(h.markdown, /block: `layers\.3` \(3\)/);
    assert.ok(h.markdown.includes(`weight: \`${layer.weight}\``));
    assert.equal(text.slice(h.offset, h.end), '"layers.3.mlp.down_proj"');
    const g = hoverAt(text, at(text, '*.mlp.*', 2), info);
    assert.match(g?.markdown ?? '', /matches 15 layers/);
    assert.equal(hoverAt(text, at(text, 'stories260K', 2), info), undefined);
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('diagnostics', () => {
  const baseDir = fixturesDir;
  const diagnose = (text: string, inspect: InspectInfo | { error: string } | 'pending' = info) => configDiagnostics({ text, baseDir, kindOf, inspect: inspect === 'pending' ? undefined : inspect });

  test('patterns matching no layer land on their exact string; real paths and matching patterns give none', () => {
    const text = [
      '{',
      '  // comments are fine',
      '  "checkpoint": "./stories260K-onnx",',
      '  "calibration": { "path": "data/tinystories_train_head_2MiB.txt" },',
      '  "evaluation": { "path": "./data/tinystories_valid_head.txt" },',
      '  "layers": {',
      '    "include": ["layers.0.*", "layers.9.*"],',
      '    "exclude": ["*.nope", "*.mlp.up_proj"],',
      '    "overrides": [{ "match": "re:q_proj$" }, { "match": "lm_head", "sparsity": 0.3 }]',
      '  }',
      '}',
    ].join('\n');
    const d = diagnose(text);
    assert.deepEqual(d.map((x) => [x.path, text.slice(x.offset, x.end), x.severity]), [
      ['$.layers.include[1]', 'layers.9.*', 'error'],
      ['$.layers.exclude[0]', '*.nope', 'error'],
      ['$.layers.overrides[1].match', 'lm_head', 'error'],
    ]);
    assert.match(d[0].message, /"layers\.9\.\*" matches no prunable layer.*layer names look like layers\.0\.self_attn\.q_proj/);
    // With the LM head prunable, lm_head matches.
    const open = text.replace('"layers": {', '"keepDense": { "lmHead": false },\n  "layers": {');
    assert.deepEqual(diagnose(open).map((x) => open.slice(x.offset, x.end)), ['layers.9.*', '*.nope']);
    // Until inspect answers, no pattern is judged.
    assert.deepEqual(diagnose(text, 'pending'), []);
  });

  test('missing checkpoint, calibration, evaluation and tokenizer paths, resolved against the config folder', () => {
    const text = '{"checkpoint": "./stories260K-onnx", "tokenizer": "tok/tokenizer.json", "calibration": {"path": "data/missing.txt"}, "evaluation": {"path": "data"}}';
    const d = diagnose(text);
    assert.deepEqual(d.map((x) => [x.path, text.slice(x.offset, x.end)]), [
      ['$.tokenizer', 'tok/tokenizer.json'],
      ['$.calibration.path', 'data/missing.txt'],
      ['$.evaluation.path', 'data'],
    ]);
    assert.ok(d[1].message.includes(`calibration data not found: ${path.join(fixturesDir, 'data', 'missing.txt')} does not exist`));
    assert.match(d[2].message, /must be a file/);
    const gone = '{"checkpoint": "../nowhere/model.onnx", "method": "magnitude"}';
    const g = diagnose(gone, { error: 'never used' });
    assert.deepEqual(g.map((x) => gone.slice(x.offset, x.end)), ['../nowhere/model.onnx']);
    assert.match(g[0].message, /checkpoint not found: .*nowhere\/model\.onnx does not exist/);
    const broken = '{"checkpoint": "./stories260K-onnx", "method": "magnitude"}';
    assert.deepEqual(diagnose(broken, { error: 'prunekit inspect failed: bad protobuf' }).map((x) => [broken.slice(x.offset, x.end), x.message]), [['./stories260K-onnx', 'prunekit inspect failed: bad protobuf']]);
  });

  test('an existing output folder is a warning (on output when written, else on the checkpoint)', () => {
    const ws = path.join(tmp, 'outws');
    mkdirSync(path.join(ws, 'stories260K-onnx-magnitude-50'), { recursive: true });
    mkdirSync(path.join(ws, 'mine'));
    const ckpt = JSON.stringify(ckptDir);
    const implicit = `{"checkpoint": ${ckpt}, "method": "magnitude"}`;
    assert.deepEqual(configDiagnostics({ text: implicit, baseDir: ws, kindOf, inspect: info }), [], 'the default output goes beside the checkpoint, not here');
    const viaLink = path.join(ws, 'model');
    symlinkSync(ckptDir, viaLink);
    const beside = '{"checkpoint": "model", "method": "magnitude"}';
    mkdirSync(path.join(ws, 'model-magnitude-50'));
    const d = configDiagnostics({ text: beside, baseDir: ws, kindOf, inspect: info });
    assert.deepEqual(d.map((x) => [beside.slice(x.offset, x.end), x.severity]), [['model', 'warning']]);
    assert.match(d[0].message, /the default output .*model-magnitude-50 exists/);
    const explicit = `{"checkpoint": ${ckpt}, "method": "magnitude", "output": "./mine"}`;
    assert.deepEqual(configDiagnostics({ text: explicit, baseDir: ws, kindOf, inspect: info }).map((x) => explicit.slice(x.offset, x.end)), ['./mine']);
    assert.deepEqual(configDiagnostics({ text: explicit.replace('}', ', "overwrite": true}'), baseDir: ws, kindOf, inspect: info }), []);
  });

  test('rules beyond the schema (N < M, calibration for apt) are shown; schema errors are left to VS Code', () => {
    const text = '{\n  "checkpoint": "./stories260K-onnx",\n  "pattern": "4:2"\n}';
    const d = diagnose(text);
    assert.deepEqual(d.map((x) => [x.path, text.slice(x.offset, x.end)]), [['$.calibration', '{'], ['$.pattern', '4:2']]);
    assert.match(d[0].message, /method "apt".*needs calibration data/);
    assert.deepEqual(diagnose('{"checkpoint": 3}'), []);
    assert.deepEqual(diagnose('{"checkpoint": "x",'), []);
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('configs of a checkpoint, and new ones', () => {
  test('found across relative and absolute paths, folder or model.onnx, trailing slashes and symlinks', () => {
    const ws = path.join(tmp, 'ws');
    const model = path.join(ws, 'models', 'm');
    mkdirSync(model, { recursive: true });
    writeFileSync(path.join(model, 'model.onnx'), '');
    mkdirSync(path.join(ws, 'configs'));
    symlinkSync(model, path.join(ws, 'link'));
    const configs = [
      { path: path.join(ws, 'configs', 'a.prune.json'), text: '{ // rel\n "checkpoint": "../models/m" }' },
      { path: path.join(ws, 'b.prune.json'), text: JSON.stringify({ checkpoint: path.join(model, 'model.onnx') }) },
      { path: path.join(ws, 'c.prune.json'), text: '{"checkpoint": "./models/m/"}' },
      { path: path.join(ws, 'd.prune.json'), text: '{"checkpoint": "./models/other"}' },
      { path: path.join(ws, 'e.prune.json'), text: '{"checkpoint": ' },
      { path: path.join(ws, 'g.prune.json'), text: '{"checkpoint": "models/m", "method": "apt",, ' },
      { path: path.join(ws, 'f.prune.json'), text: '{"checkpoint": "link"}' },
    ];
    const names = (cs: { path: string }[]) => cs.map((c) => path.basename(c.path));
    const same = ['a.prune.json', 'b.prune.json', 'c.prune.json', 'g.prune.json'];
    assert.deepEqual(names(configsForCheckpoint(model, configs)), same);
    assert.deepEqual(names(configsForCheckpoint(path.join(model, 'model.onnx'), configs)), same);
    assert.deepEqual(names(configsForCheckpoint(model, configs, realpathSync)), [...same, 'f.prune.json']);
    assert.equal(checkpointKey(`${model}/`), model);
  });

  test('a new config goes beside the model, named after it, never over an existing file', () => {
    const taken = new Set(['/w/m.prune.json', '/w/m-2.prune.json']);
    const exists = (p: string) => taken.has(p);
    assert.equal(newConfigPath('/w/m', exists), '/w/m-3.prune.json');
    assert.equal(newConfigPath('/w/m/model.onnx', () => false), '/w/m.prune.json');
    assert.equal(newConfigPath('/w/llama.onnx', () => false), '/w/llama.prune.json');
    assert.equal(newConfigPath('/ro/m', () => false, '/ws'), '/ws/m.prune.json');
  });

  const settings: NewConfigSettings = { method: 'apt', sparsity: 0.5, pattern: '2:4', device: 'auto', calibrationPath: '', evaluationPath: '', outputDirectory: '' };

  test('generated configs resolve: data from the settings, else guessed from file names, else a flagged placeholder', () => {
    const configPath = path.join(fixturesDir, 'stories260K-onnx.prune.json');
    const candidates = ['README.txt', 'tinystories_valid_head.txt', 'tinystories_train_head_2MiB.txt', 'tinyshakespeare.txt'].map((f) => path.join(dataDir, f));
    const guessed = newConfigText({ configPath, checkpoint: ckptDir, settings, dataCandidates: candidates });
    const c = resolveConfig(parseConfigText(guessed), fixturesDir);
    assert.equal(c.checkpoint, ckptDir);
    assert.equal(c.calibration?.path, path.join(dataDir, 'tinystories_train_head_2MiB.txt'));
    assert.equal(c.evaluation && c.evaluation.path, path.join(dataDir, 'tinystories_valid_head.txt'));
    assert.deepEqual([c.method, c.pattern, c.device, c.output], ['apt', '2:4', 'auto', path.join(fixturesDir, 'stories260K-onnx-apt-2of4')]);
    assert.match(guessed, /"calibration": \{ "path": "\.\/data\/tinystories_train_head_2MiB\.txt"/);
    assert.ok(guessed.split('\n').filter((l) => l.trim().startsWith('//')).length >= 10, 'a comment per field');
    assert.deepEqual(configDiagnostics({ text: guessed, baseDir: fixturesDir, kindOf, inspect: info }), []);

    const fromSettings = newConfigText({ configPath, checkpoint: ckptDir, settings: { ...settings, method: 'sparsegpt', pattern: 'unstructured', sparsity: 0.7, calibrationPath: path.join(dataDir, 'tinyshakespeare.txt'), outputDirectory: path.join(tmp, 'out') }, dataCandidates: candidates });
    const s = resolveConfig(parseConfigText(fromSettings), fixturesDir);
    assert.deepEqual([s.method, s.sparsity, s.calibration?.path, s.output], ['sparsegpt', 0.7, path.join(dataDir, 'tinyshakespeare.txt'), path.join(tmp, 'out', 'stories260K-onnx-sparsegpt-70')]);

    const none = newConfigText({ configPath, checkpoint: ckptDir, settings, dataCandidates: [path.join(dataDir, 'README.txt')] });
    assert.ok(none.includes(JSON.stringify(CALIBRATION_PLACEHOLDER)));
    const d = configDiagnostics({ text: none, baseDir: fixturesDir, kindOf, inspect: info });
    assert.deepEqual(d.map((x) => [x.path, none.slice(x.offset, x.end)]), [['$.calibration.path', CALIBRATION_PLACEHOLDER]]);
    assert.match(d[0].message, /^placeholder: replace it with the calibration data/);

    const magnitude = newConfigText({ configPath, checkpoint: ckptDir, settings: { ...settings, method: 'magnitude' }, dataCandidates: candidates });
    const m = resolveConfig(parseConfigText(magnitude), fixturesDir);
    assert.equal(m.calibration, null, 'magnitude reads no calibration data');
    assert.equal(m.evaluation && m.evaluation.path, path.join(dataDir, 'tinystories_valid_head.txt'));
  });

  test('data guesses go by name: calibration prefers calib/train, evaluation valid/test', () => {
    assert.equal(guessDataFile('calibration', ['/d/notes.txt', '/d/wiki_test.txt', '/d/my-calib.jsonl', '/d/train.txt']), '/d/my-calib.jsonl');
    assert.equal(guessDataFile('evaluation', ['/d/notes.txt', '/d/train.txt', '/d/wikitext2_test.raw']), '/d/wikitext2_test.raw');
    assert.equal(guessDataFile('calibration', ['/d/LICENSE.txt', '/d/requirements.txt']), undefined);
  });

  test('the CodeLens summary counts the layers a config prunes, with per-layer overrides', () => {
    const c = (o: object) => resolveConfig({ checkpoint: ckptDir, calibration: { path: 'x.txt' }, ...o }, fixturesDir);
    assert.equal(configSummary(c({ pattern: '2:4' }), info), 'apt · 2:4 · 35 layers');
    assert.equal(configSummary(c({ layers: { exclude: ['layers.0.*'], overrides: [{ match: '*.mlp.*', method: 'wanda', sparsity: 0.6 }] } }), info), 'apt+wanda · 50%+60% · 28 layers');
    assert.equal(configSummary(c({ keepDense: { lmHead: false } }), info), 'apt · 50% · 36 layers');
    assert.equal(configSummary(c({}), undefined), 'apt · 50%');
  });
});
