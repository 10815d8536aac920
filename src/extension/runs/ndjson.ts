// Reading the backend's streams as lines. A pipe hands over arbitrary chunks: a line may span chunks, a
// multi-byte UTF-8 character may be cut between two, Windows backends end lines with CRLF and the last line may
// have no newline at all. LineSplitter turns chunks into whole lines; NdjsonReader turns lines into checked
// protocol events and hands anything else (a stray console.log, a truncated line, another protocol version)
// to a callback instead of throwing: a bad line must never take the run view down.

import { StringDecoder } from 'node:string_decoder';
import { Event, EventParseError, parseEvent } from '../../protocol/events';

/** Chunks in, whole lines out (without their line end). */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: Buffer | string): void {
    this.pending += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    let start = 0;
    for (let nl = this.pending.indexOf('\n'); nl !== -1; nl = this.pending.indexOf('\n', start)) {
      this.emit(this.pending.slice(start, nl));
      start = nl + 1;
    }
    this.pending = this.pending.slice(start);
  }

  /** The stream ended: a last line without a newline is still a line. */
  end(): void {
    this.pending += this.decoder.end();
    if (this.pending.length > 0) this.emit(this.pending);
    this.pending = '';
  }

  private emit(line: string): void {
    this.onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
  }
}

export interface NdjsonHandlers {
  onEvent(event: Event, line: string): void;
  /** A non-empty line that is not a valid event; `error` says why (with its JSON path). */
  onInvalid(line: string, error: EventParseError): void;
}

/** Chunks of NDJSON in, checked events out. Blank lines are skipped. */
export class NdjsonReader {
  private readonly lines: LineSplitter;

  constructor(handlers: NdjsonHandlers) {
    this.lines = new LineSplitter((line) => {
      if (line.trim() === '') return;
      let event: Event;
      try {
        event = parseEvent(line);
      } catch (e) {
        if (e instanceof EventParseError) return handlers.onInvalid(line, e);
        throw e;
      }
      handlers.onEvent(event, line);
    });
  }

  push(chunk: Buffer | string): void {
    this.lines.push(chunk);
  }

  end(): void {
    this.lines.end();
  }
}

/** A whole NDJSON text (an events.ndjson file) as its valid events; invalid lines go to `onInvalid`. */
export function readNdjson(text: string, onInvalid: (line: string, error: EventParseError) => void = () => {}): Event[] {
  const events: Event[] = [];
  const reader = new NdjsonReader({ onEvent: (e) => events.push(e), onInvalid });
  reader.push(text);
  reader.end();
  return events;
}
