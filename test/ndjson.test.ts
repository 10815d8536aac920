// The NDJSON reader the extension reads the backend's stdout with: lines split across chunks, CRLF, a last
// line without a newline, multi-byte UTF-8 characters cut between chunks, and lines that are not events
// (which go to the callback and never throw).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Event, EventParseError, formatEvent, makeEvent } from '../src/protocol/events';
import { LineSplitter, NdjsonReader, readNdjson } from '../src/extension/runs/ndjson';

const warning = (message: string) => makeEvent('warning.raised', { code: 'other', message, layer: 'layers.0.mlp.down_proj' });
const cancelled = makeEvent('run.cancelled', { signal: 'SIGTERM', lastLayer: 'layers.1.self_attn.q_proj', seconds: 1.25 });

function read(chunks: (string | Buffer)[]): { events: Event[]; invalid: { line: string; error: EventParseError }[] } {
  const events: Event[] = [];
  const invalid: { line: string; error: EventParseError }[] = [];
  const reader = new NdjsonReader({ onEvent: (e) => events.push(e), onInvalid: (line, error) => invalid.push({ line, error }) });
  for (const c of chunks) reader.push(c);
  reader.end();
  return { events, invalid };
}

/** Splits a buffer at every given byte offset. */
function cut(buf: Buffer, at: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const a of at) {
    out.push(buf.subarray(prev, a));
    prev = a;
  }
  out.push(buf.subarray(prev));
  return out;
}

describe('LineSplitter', () => {
  test('lines across chunks, CRLF, blank lines and a last line without newline', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    for (const c of ['ab', 'c\r', '\nde\n', '\n', 'f\r\ng', 'h']) s.push(c);
    assert.deepEqual(lines, ['abc', 'de', '', 'f']);
    s.end();
    assert.deepEqual(lines, ['abc', 'de', '', 'f', 'gh']);
  });

  test('a multi-byte character cut at every byte offset decodes intact', () => {
    const text = 'Gewicht ü · 模型 · 🙂\nnext\n';
    const buf = Buffer.from(text, 'utf8');
    for (let i = 1; i < buf.length; i++) {
      const lines: string[] = [];
      const s = new LineSplitter((l) => lines.push(l));
      for (const c of cut(buf, [i])) s.push(c);
      s.end();
      assert.deepEqual(lines, ['Gewicht ü · 模型 · 🙂', 'next'], `cut at byte ${i}`);
    }
  });
});

describe('NdjsonReader', () => {
  test('events survive any chunking byte by byte, with CRLF and no final newline', () => {
    const a = warning('Dämpfung erhöht für 模型 🙂');
    const text = `${formatEvent(a)}\r\n${formatEvent(cancelled)}`;
    const bytes = Buffer.from(text, 'utf8');
    const { events, invalid } = read([...bytes].map((b) => Buffer.from([b])));
    assert.deepEqual(invalid, []);
    assert.deepEqual(events, [a, cancelled]);
  });

  test('non-JSON, invalid and other-version lines go to onInvalid with their JSON path; the stream goes on', () => {
    const good = warning('ok');
    const lines = [
      'Loading model…',
      formatEvent(good),
      '{"v":1,"type":"layer.pruned","layer":"x"}',
      '{"v":2,"type":"run.finished"}',
      '{"v":1,"type":"run.exploded"}',
      '   ',
      '[1,2,3]',
      formatEvent(cancelled).slice(0, 30),
      formatEvent(cancelled),
    ];
    const { events, invalid } = read([lines.join('\n') + '\n']);
    assert.deepEqual(events, [good, cancelled]);
    assert.deepEqual(invalid.map((i) => i.error.path), ['$', '$.block', '$.v', '$.type', '$', '$']);
    assert.equal(invalid[0].line, 'Loading model…');
    assert.match(invalid[0].error.problem, /not JSON/);
    assert.match(invalid[2].error.problem, /protocol version 2/);
  });

  test('readNdjson reads a whole events file and reports its bad lines', () => {
    const bad: string[] = [];
    const events = readNdjson(`${formatEvent(cancelled)}\ngarbage\n`, (line) => bad.push(line));
    assert.deepEqual(events, [cancelled]);
    assert.deepEqual(bad, ['garbage']);
  });
});
