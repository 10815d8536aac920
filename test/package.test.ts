// `npm run package`: the five VSIXs built once (production bundle included), each opened as the zip it is and
// checked: its manifest's target, exactly its own platform's onnxruntime binaries (the binding's machine code
// read from its ELF / Mach-O / PE header), the bundle and webview, the CUDA installer on linux-x64 only; the
// VSIX for this machine is unpacked and its backend run on the fixture model.
// adm-zip reads the zips: onnxruntime-node depends on it already (its CUDA installer unpacks NuGet packages).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import AdmZip from 'adm-zip';
import { binaryDir, ORT_BIN, packageAll, repoRoot, Target, TARGETS } from '../scripts/package';
import { readNdjson } from '../src/extension/runs/ndjson';
import { fixturesDir } from './helpers/realLayers';

const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-package-'));
after(() => rmSync(work, { recursive: true, force: true }));

const NATIVE = /\.(node|dll|dylib|so(\.\d+)*)$/;

/** The platform and CPU a native binary is built for, from its header. */
function machineOf(bytes: Buffer): string {
  if (bytes.readUInt32BE(0) === 0x7f454c46) return `linux-${({ 0x3e: 'x64', 0xb7: 'arm64' } as Record<number, string>)[bytes.readUInt16LE(18)] ?? 'other'}`;
  if (bytes.readUInt32LE(0) === 0xfeedfacf) return `darwin-${({ 0x0100000c: 'arm64', 0x01000007: 'x64' } as Record<number, string>)[bytes.readUInt32LE(4)] ?? 'other'}`;
  if (bytes.toString('latin1', 0, 2) === 'MZ') {
    const pe = bytes.readUInt32LE(0x3c);
    assert.equal(bytes.toString('latin1', pe, pe + 4), 'PE\0\0');
    return `win32-${({ 0x8664: 'x64', 0xaa64: 'arm64' } as Record<number, string>)[bytes.readUInt16LE(pe + 4)] ?? 'other'}`;
  }
  return 'unknown';
}

describe('npm run package: one VSIX per target', () => {
  let files: Map<Target, string>;
  before(async () => {
    const t0 = performance.now();
    files = await packageAll(TARGETS, path.join(work, 'vsix'));
    const sizes = [...files].map(([t, f]) => `${t.name} ${(statSync(f).size / 2 ** 20).toFixed(1)} MB`);
    console.log(`packaged in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${sizes.join(', ')}`);
  });

  for (const target of TARGETS) {
    test(`${target.name}: its manifest's target, only its own onnxruntime binaries, the bundle and the webview`, () => {
      const zip = new AdmZip(files.get(target)!);
      const names = zip.getEntries().map((e) => e.entryName);
      const manifest = zip.readAsText('extension.vsixmanifest');
      assert.match(manifest, new RegExp(`TargetPlatform="${target.name}"`));

      const own = `extension/${binaryDir(target)}/`;
      const native = names.filter((n) => NATIVE.test(n));
      assert.deepEqual(native.sort(), target.binaries.map((f) => own + f).sort());
      assert.deepEqual(names.filter((n) => n.startsWith(`extension/${ORT_BIN}/`) && !n.startsWith(own)), []);
      for (const f of target.binaries) {
        const entry = zip.getEntry(own + f)!;
        assert.equal(entry.header.size, statSync(path.join(repoRoot, binaryDir(target), f)).size, f);
      }
      assert.equal(machineOf(zip.readFile(own + 'onnxruntime_binding.node')!), target.name);

      for (const f of ['dist/backend.js', 'dist/extension.js', 'dist/webview.js', 'media/panel.css', 'media/prunekit.svg', 'package.json', 'readme.md',
        'src/protocol/prune-config.schema.json', 'node_modules/onnxruntime-node/dist/index.js', 'node_modules/onnxruntime-common/dist/cjs/index.js', 'node_modules/onnxruntime-common/dist/cjs/package.json']) {
        assert.ok(names.includes(`extension/${f}`), `${f} missing`);
      }
      const ownOrOnnxruntime = names.filter((n) => !n.startsWith('extension/node_modules/') || n.startsWith('extension/node_modules/onnxruntime-'));
      assert.deepEqual(ownOrOnnxruntime.filter((n) => /\.(ts|map)$/.test(n) || /^extension\/(src\/backend|test|bench|webview|scripts)\//.test(n)), []);
      assert.equal(names.includes('extension/node_modules/onnxruntime-node/script/install.js'), target.cudaInstaller);
      assert.equal(names.includes('extension/node_modules/adm-zip/package.json'), target.cudaInstaller);
      assert.equal(target.cudaInstaller, target.name === 'linux-x64');
    });
  }

  test('the VSIX for this machine, unpacked, prunes and evaluates the fixture model on its own onnxruntime binaries', () => {
    const target = TARGETS.find((t) => t.name === `${process.platform}-${process.arch}`);
    assert.ok(target, `no VSIX target for ${process.platform}-${process.arch}`);
    const dir = path.join(work, 'unpacked');
    new AdmZip(files.get(target)!).extractAllTo(dir);
    const backend = path.join(dir, 'extension', 'dist', 'backend.js');
    // 20 kB of the evaluation text: enough for two windows, without tokenizing the whole file.
    const evalText = path.join(work, 'eval.txt');
    writeFileSync(evalText, readFileSync(path.join(fixturesDir, 'data', 'tinystories_valid_head.txt')).subarray(0, 20_000));
    const out = execFileSync(process.execPath, [backend, 'prune', path.join(fixturesDir, 'stories260K-onnx'), '--method', 'magnitude', '--eval', evalText, '--max-windows', '2',
      '--eval-seqlen', '64', '--device', 'cpu', '--out', path.join(work, 'pruned'), '--json'], { cwd: work, encoding: 'utf8' });
    const events = readNdjson(out);
    const finished = events.at(-1);
    assert.equal(finished?.type, 'run.finished', out.slice(-2000));
    assert.equal(finished.totals.layers, 35);
    assert.ok(finished.totals.prunedPerplexity !== null && Number.isFinite(finished.totals.prunedPerplexity));
    const loaded = require.resolve('onnxruntime-node', { paths: [path.dirname(backend)] });
    assert.ok(loaded.startsWith(dir), loaded);
  });
});
