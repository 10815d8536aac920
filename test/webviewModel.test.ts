// The webview's view model on real event streams: the backend prunes the fixtures' stories260K and the model
// must chart exactly the losses the stream reports, in layer order, grouped by the run's blocks, with sums that
// match the backend's own block and run totals.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { EventOf } from '../src/protocol/events';
import { progressOf } from '../src/protocol/progress';
import { formatLoss, formatPerplexity, formatSeconds } from '../webview/format';
import { compareView, layerKind, LayerRow, RunModel, sortRows } from '../webview/model';
import { RecordedRun, recordRun } from './helpers/recordedRuns';

const pruned = (r: RecordedRun) => r.events.filter((e): e is EventOf<'layer.pruned'> => e.type === 'layer.pruned');
const started = (r: RecordedRun) => r.events.find((e): e is EventOf<'run.started'> => e.type === 'run.started')!;
const finished = (r: RecordedRun) => r.events.find((e): e is EventOf<'run.finished'> => e.type === 'run.finished')!;

/** Relative closeness, for sums of the same float64 terms taken in another order. */
function assertClose(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);
}

let apt: RecordedRun;
let nm: RecordedRun;

before(async () => {
  apt = await recordRun({ method: 'apt', sparsity: 0.5 });
  nm = await recordRun({ method: 'sparsegpt', pattern: '2:4' });
  assert.equal(apt.exitCode, 0, apt.stderr);
  assert.equal(nm.exitCode, 0, nm.stderr);
});

after(() => {
  apt?.dispose();
  nm?.dispose();
});

describe('run view model on a real APT run of stories260K', () => {
  test('the layer axis is run.started\'s targeted layers, banded by its blocks', () => {
    const m = RunModel.fromSnapshot(apt.snapshot('apt'));
    const s = started(apt);
    const targeted = s.layers.filter((l) => l.target !== null);
    assert.equal(targeted.length, 35);
    assert.deepEqual(m.axis.layers.map((l) => l.name), targeted.map((l) => l.name));
    const bands = m.axis.blocks();
    assert.deepEqual(bands.map((b) => b.name), s.blocks.map((b) => b.name));
    for (const [i, b] of bands.entries()) {
      assert.deepEqual(m.axis.layers.slice(b.from, b.to + 1).map((l) => l.name), s.blocks[i].layers, `band ${b.name}`);
    }
  });

  test('one chart point per layer.pruned, at its axis position, with its loss (and relLoss in relative mode)', () => {
    const m = RunModel.fromSnapshot(apt.snapshot('apt'));
    const events = pruned(apt);
    assert.equal(events.length, 35);
    assert.ok(events.every((e) => e.loss !== null && e.loss > 0 && e.relLoss !== null && e.relLoss > 0));
    for (const mode of ['loss', 'relLoss'] as const) {
      const points = m.series(mode).flatMap((s) => s.points.map((p) => ({ ...p, kind: s.kind })));
      assert.equal(points.length, events.length, mode);
      assert.equal(m.charted(mode), events.length);
      for (const e of events) {
        const p = points.filter((q) => q.row.layer === e.layer);
        assert.equal(p.length, 1, e.layer);
        assert.equal(p[0].y, e[mode], `${e.layer} ${mode}`);
        assert.equal(p[0].x, m.axis.positionOf(e.layer));
        assert.equal(p[0].kind, layerKind(e.layer));
      }
    }
    // stories260K is a Llama: seven kinds, one point of each per block.
    const series = m.series('loss');
    assert.deepEqual(series.map((s) => s.kind), ['q', 'k', 'v', 'o', 'gate', 'up', 'down']);
    assert.ok(series.every((s) => s.points.length === 5));
    assert.deepEqual(series.map((s) => s.family), ['attention', 'attention', 'attention', 'attention', 'mlp', 'mlp', 'mlp']);
  });

  test('rows carry the event\'s numbers; block and run sums equal the backend\'s totals', () => {
    const m = RunModel.fromSnapshot(apt.snapshot('apt'));
    const events = pruned(apt);
    assert.deepEqual(
      m.rows.map((r) => [r.layer, r.shape, r.sparsity, r.loss, r.relLoss, r.seconds]),
      events.map((e) => [e.layer, e.shape, e.sparsity, e.loss, e.relLoss, e.seconds]),
    );
    for (const b of apt.events.filter((e): e is EventOf<'block.finished'> => e.type === 'block.finished')) {
      const rows = m.rows.filter((r) => r.block === b.block);
      assert.equal(rows.length, b.layers);
      assertClose(rows.reduce((s, r) => s + r.loss!, 0), b.loss!, `block ${b.block} loss`);
    }
    const f = finished(apt);
    assertClose(m.rows.reduce((s, r) => s + r.loss!, 0), f.totals.loss!, 'run loss');
    const weights = m.rows.reduce((s, r) => s + r.shape[0] * r.shape[1], 0);
    assert.equal(weights, f.totals.parameters);
    assertClose(m.rows.reduce((s, r) => s + r.sparsity * r.shape[0] * r.shape[1], 0), f.totals.zeros, 'zeros');
  });

  test('summary and progress: finished, perplexities and time from the stream', () => {
    const m = RunModel.fromSnapshot(apt.snapshot('apt'));
    const f = finished(apt);
    const dense = apt.events.find((e): e is EventOf<'evaluation.finished'> => e.type === 'evaluation.finished' && e.model === 'dense')!;
    const prunedEval = apt.events.find((e): e is EventOf<'evaluation.finished'> => e.type === 'evaluation.finished' && e.model === 'pruned')!;
    const s = m.summary();
    assert.equal(m.status, 'finished');
    assert.equal(s.densePerplexity, dense.perplexity);
    assert.equal(s.prunedPerplexity, prunedEval.perplexity);
    assert.ok(s.prunedPerplexity! > s.densePerplexity!, 'pruning half the weights costs perplexity');
    assert.equal(s.seconds, f.totals.seconds);
    assert.equal(s.output, apt.out);
    assert.equal(s.lossSum, f.totals.loss);
    assert.equal(m.ending(), null);
    assert.equal(m.progress.layersDone, 35);
    assert.equal(m.progress.layersTotal, 35);
    assert.equal(m.progress.blocksDone, 5);
    assert.equal(m.progress.device, started(apt).device);
    assert.equal(formatPerplexity(s.densePerplexity), dense.perplexity.toFixed(4));
  });

  test('live: fed one event at a time, the chart grows by one point per pruned layer and ends equal to the snapshot', () => {
    const live = new RunModel(apt.out, 'apt');
    let done = 0;
    apt.events.forEach((e, i) => {
      live.add(e, apt.times[i]);
      if (e.type === 'layer.pruned') done += 1;
      assert.equal(live.charted('loss'), done);
      assert.equal(live.progress.layersDone, done);
    });
    const whole = RunModel.fromSnapshot(apt.snapshot('apt'));
    assert.deepEqual(live.series('loss'), whole.series('loss'));
    assert.deepEqual(live.progress, progressOf(apt.events, apt.times));
  });

  test('table order: by loss (largest first), by name, back to layer order', () => {
    const m = RunModel.fromSnapshot(apt.snapshot('apt'));
    const byLoss = sortRows(m.rows, { key: 'loss', descending: true });
    for (let i = 1; i < byLoss.length; i++) assert.ok(byLoss[i - 1].loss! >= byLoss[i].loss!);
    assert.equal(byLoss[0].loss, Math.max(...pruned(apt).map((e) => e.loss!)));
    const byName = sortRows(m.rows, { key: 'layer', descending: false }).map((r) => r.layer);
    assert.deepEqual(byName, [...byName].sort((a, b) => a.localeCompare(b)));
    assert.deepEqual(sortRows(byLoss, { key: 'position', descending: false }).map((r) => r.layer), m.axis.layers.map((l) => l.name));
    // Missing values sort last either way.
    const withNull: LayerRow[] = [{ ...m.rows[0], loss: null, position: 99 }, ...m.rows.slice(1, 3)];
    assert.equal(sortRows(withNull, { key: 'loss', descending: true }).at(-1)!.loss, null);
    assert.equal(sortRows(withNull, { key: 'loss', descending: false }).at(-1)!.loss, null);
  });
});

describe('run view model on failed, cancelled and interrupted runs', () => {
  test('a missing calibration file: failed with the backend\'s code, message and file', async () => {
    const r = await recordRun({ calibration: '/nonexistent/calibration.txt' });
    try {
      const m = RunModel.fromSnapshot(r.snapshot('bad'));
      const failed = r.events.find((e): e is EventOf<'run.failed'> => e.type === 'run.failed')!;
      assert.ok(failed, r.stderr);
      assert.equal(m.status, 'failed');
      const ending = m.ending();
      assert.equal(ending?.kind, 'failed');
      if (ending?.kind !== 'failed') return;
      assert.equal(ending.code, 'data-not-found');
      assert.equal(ending.message, failed.message);
      assert.match(ending.message, /calibration\.txt/);
      assert.equal(m.rows.length, 0);
    } finally {
      r.dispose();
    }
  });

  test('SIGTERM after the first block: cancelled, the pruned layers kept, last layer named', async () => {
    const r = await recordRun({ cancelAfter: 'block.finished', evaluate: false });
    try {
      const m = RunModel.fromSnapshot(r.snapshot('cancelled'));
      const cancelled = r.events.at(-1) as EventOf<'run.cancelled'>;
      assert.equal(cancelled.type, 'run.cancelled', r.stderr);
      assert.equal(m.status, 'cancelled');
      const ending = m.ending();
      assert.deepEqual(ending, { kind: 'cancelled', signal: 'SIGTERM', lastLayer: cancelled.lastLayer, seconds: cancelled.seconds });
      assert.equal(m.rows.length, pruned(r).length);
      assert.equal(m.rows.at(-1)!.layer, cancelled.lastLayer);
      assert.ok(m.rows.length >= 7 && m.rows.length < 35);
      assert.equal(m.summary().output, null);
    } finally {
      r.dispose();
    }
  });

  test('a stream cut short and marked interrupted by the host', () => {
    const cut = apt.events.findIndex((e) => e.type === 'block.finished');
    const snapshot = { ...apt.snapshot('cut'), events: apt.events.slice(0, cut), times: apt.times.slice(0, cut), status: 'interrupted' as const, interruption: 'exit code 9' };
    const m = RunModel.fromSnapshot(snapshot);
    assert.equal(m.status, 'interrupted');
    assert.deepEqual(m.ending(), { kind: 'interrupted', message: 'exit code 9' });
    assert.equal(m.progress.error?.message, 'exit code 9');
    assert.equal(m.charted('loss'), 7);
  });
});

describe('compare view', () => {
  test('two real runs over one axis: each run\'s points are its own losses; the table numbers are its totals', () => {
    const v = compareView([apt.snapshot('apt 50%'), nm.snapshot('sparsegpt 2:4')]);
    assert.deepEqual(v.axis.layers.map((l) => l.name), started(apt).layers.filter((l) => l.target).map((l) => l.name));
    assert.deepEqual(v.runs.map((r) => [r.label, r.method, r.pattern, r.sparsity]), [
      ['apt 50%', 'apt', 'unstructured', 0.5],
      ['sparsegpt 2:4', 'sparsegpt', '2:4', started(nm).config.sparsity],
    ]);
    for (const [i, rec] of [apt, nm].entries()) {
      const run = v.runs[i];
      const f = finished(rec);
      const points = run.points('loss');
      assert.equal(points.length, pruned(rec).length);
      for (const e of pruned(rec)) assert.equal(points.find((p) => p.x === v.axis.positionOf(e.layer))?.y, e.loss, e.layer);
      assert.deepEqual(points.map((p) => p.x), [...points.map((p) => p.x)].sort((a, b) => a - b));
      assert.equal(run.lossSum, f.totals.loss);
      assert.equal(run.densePerplexity, f.totals.densePerplexity);
      assert.equal(run.prunedPerplexity, f.totals.prunedPerplexity);
      assert.equal(run.seconds, f.totals.seconds);
      assert.equal(run.status, 'finished');
    }
    // Same model and data: the dense perplexity is the same number in both runs.
    assert.equal(v.runs[0].densePerplexity, v.runs[1].densePerplexity);
    // 2:4 zeroes exactly half of every group of four.
    assert.ok(pruned(nm).every((e) => e.sparsity === 0.5));
  });
});

describe('layer kinds and number formats', () => {
  test('kinds from the friendly name\'s last component', () => {
    const cases: [string, string][] = [
      ['layers.3.self_attn.q_proj', 'q'],
      ['layers.0.mlp.down_proj', 'down'],
      ['/model/layers.0/self_attn/k_proj/MatMul', 'k'],
      ['model.decoder.layers.2.self_attn.out_proj', 'o'],
      ['model.decoder.layers.2.fc1', 'fc1'],
      ['backbone.layers.1.mixer.in_proj', 'in_proj'],
      ['backbone.layers.1.mixer.x_proj', 'x_proj'],
      ['backbone.layers.1.mixer.dt_proj', 'dt_proj'],
      ['layers.1.mixer.conv1d', 'conv1d'],
      ['backbone.layers.1.mixer.out_proj', 'out_proj'],
      ['lm_head', 'lm_head'],
      ['layers.0.self_attn.qkv_proj', 'qkv'],
      ['model.layers.3.mlp.gate_up_proj', 'gate_up'],
      ['transformer.h.0.attn.c_attn', 'qkv'],
      ['h.0.attn.c_proj', 'o'],
      ['h.0.mlp.c_fc', 'fc1'],
      ['h.0.mlp.c_proj', 'fc2'],
      ['layers.0.attention.query_key_value', 'qkv'],
      ['layers.0.attention.dense', 'o'],
      ['layers.0.mlp.dense_4h_to_h', 'fc2'],
      ['layers.0.block_sparse_moe.experts.3.w1', 'gate'],
      ['layers.0.mlp.experts.63.down_proj', 'down'],
      ['layers.0.mlp.shared_expert.up_proj', 'up'],
      ['model.layers.0.mlp.dense', 'other'],
    ];
    assert.deepEqual(cases.map(([n]) => [n, layerKind(n)]), cases);
  });

  test('formats', () => {
    assert.equal(formatPerplexity(4.384979431057987), '4.3850');
    assert.equal(formatPerplexity(null), '—');
    assert.equal(formatLoss(836.3580322265625), '836.4');
    assert.equal(formatLoss(0.004211108689411373), '0.004211');
    assert.equal(formatLoss(0.0000123), '1.230e-5');
    assert.equal(formatSeconds(0.4219), '0.42 s');
    assert.equal(formatSeconds(245), '4 min 05 s');
  });
});
