// `prunekit`: the pruning backend's command line. The extension spawns this same bundle.

import { parseArgs } from 'node:util';
import { METHODS, pruneLayer } from '../methods';
import type { MethodName, Pattern } from '../methods/types';
import { DeviceRequest, Engine } from '../onnx/session';
import { syntheticLayer } from '../synthetic';

const USAGE = `usage: prunekit <command> [options]

commands:
  demo      prune generated Llama-shaped layers with every method and print the per-layer losses

options:
  --device auto|cpu|cuda[:N]|webgpu   where onnxruntime runs the graphs (default auto)
  --threads N                         onnxruntime intra-op threads (default: one per core)
  --sparsity S                        unstructured sparsity for the demo (default 0.5)
  --pattern N:M                       also prune with this N:M pattern (default 2:4)
  -h, --help                          this text
`;

function parsePattern(s: string): Pattern {
  const m = /^(\d+):(\d+)$/.exec(s);
  if (!m) throw new Error(`--pattern: '${s}' is not of the form N:M (e.g. 2:4)`);
  return { kind: 'nm', n: Number(m[1]), m: Number(m[2]) };
}

function fmt(x: number, digits = 3): string {
  return Number.isFinite(x) ? x.toExponential(digits) : String(x);
}

async function demo(engine: Engine, sparsity: number, nm: Pattern): Promise<void> {
  // One Llama-style block (hidden 256, SwiGLU 688): attention and MLP projections of three shapes.
  const shapes: [string, number, number][] = [
    ['layers.0.self_attn.q_proj', 256, 256],
    ['layers.0.mlp.gate_proj', 688, 256],
    ['layers.0.mlp.down_proj', 256, 688],
  ];
  const patterns: Pattern[] = [{ kind: 'unstructured', sparsity }, nm];
  const methods = Object.keys(METHODS) as MethodName[];
  const header = ['layer', 'shape', 'pattern', 'method', 'loss', 'rel.loss', 'sparsity', 'seconds'];
  const rows: string[][] = [];
  const totals = new Map<string, number>();
  for (const [name, r, c] of shapes) {
    const layer = await syntheticLayer(name, r, c, engine);
    for (const pattern of patterns) {
      const pat = pattern.kind === 'nm' ? `${pattern.n}:${pattern.m}` : `${Math.round(pattern.sparsity * 100)}%`;
      for (const method of methods) {
        const res = await pruneLayer(method, layer, { pattern }, engine);
        rows.push([name, `${r}x${c}`, pat, method, fmt(res.loss), fmt(res.relLoss), res.sparsity.toFixed(3), res.seconds.toFixed(3)]);
        totals.set(`${pat} ${method}`, (totals.get(`${pat} ${method}`) ?? 0) + res.loss);
      }
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
  console.log('\nsummed loss per pattern and method:');
  for (const [k, v] of totals) console.log(`  ${k.padEnd(16)} ${fmt(v)}`);
  console.log(`\ndevice: ${engine.device}${engine.fallbacks.length ? ` (not used: ${engine.fallbacks.join('; ')})` : ''}`);
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      device: { type: 'string', default: 'auto' },
      threads: { type: 'string', default: '0' },
      sparsity: { type: 'string', default: '0.5' },
      pattern: { type: 'string', default: '2:4' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const command = positionals[0];
  if (values.help || !command) {
    process.stdout.write(USAGE);
    return command || values.help ? 0 : 2;
  }
  const device = values.device as DeviceRequest;
  if (!/^(auto|cpu|webgpu|cuda(:\d+)?)$/.test(device)) throw new Error(`--device: '${device}' is not one of auto, cpu, cuda[:N], webgpu`);
  const engine = new Engine({ device, threads: Number(values.threads) });
  switch (command) {
    case 'demo':
      await demo(engine, Number(values.sparsity), parsePattern(values.pattern as string));
      return 0;
    default:
      process.stderr.write(`prunekit: unknown command '${command}'\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`prunekit: ${e.message}\n`);
    process.exit(1);
  },
);
