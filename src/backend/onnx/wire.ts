// Why hand-written: it is the wire layer of proto.ts's codec (see there why no protobuf package); protobufjs reads
// int64 as its own Long objects, where this keeps plain numbers and bigints.
// Protocol-buffers wire format: just what a schema-driven ONNX codec needs.
// Varints are read as numbers when they fit in 2^53 and as bigints otherwise, so int64 attributes such as
// Slice's INT64_MAX survive a decode/encode round trip unchanged.

export type Int64 = number | bigint;

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

export class Reader {
  pos: number;
  constructor(readonly buf: Uint8Array, start = 0, readonly end = buf.length) {
    this.pos = start;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  varint(): Int64 {
    // Fast path: up to 7 bytes fit in a double exactly.
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    // Slow path: finish in bigint, interpret as two's-complement int64.
    let big = BigInt(result);
    let shift = 49n;
    for (let i = 7; i < 10; i++) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const b = this.buf[this.pos++];
      big |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
      shift += 7n;
      if (i === 9) throw new Error('varint longer than 10 bytes');
    }
    big = BigInt.asIntN(64, big);
    return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  }

  uint32(): number {
    const v = this.varint();
    return typeof v === 'bigint' ? Number(BigInt.asUintN(32, v)) : v;
  }

  bytes(): Uint8Array {
    const len = this.uint32();
    if (this.pos + len > this.end) throw new Error(`length-delimited field of ${len} bytes runs past the end`);
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  float32(): number {
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }

  float64(): number {
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getFloat64(0, true);
    this.pos += 8;
    return v;
  }

  /** Skips one field payload of the given wire type. */
  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT: this.varint(); break;
      case WIRE_I64: this.pos += 8; break;
      case WIRE_LEN: this.bytes(); break;
      case WIRE_I32: this.pos += 4; break;
      default: throw new Error(`unsupported wire type ${wire}`);
    }
    if (this.pos > this.end) throw new Error('field runs past the end');
  }
}

/** Growable byte sink. Large byte fields are kept by reference and joined once at the end. */
export class Writer {
  private chunks: Uint8Array[] = [];
  private cur = new Uint8Array(4096);
  private n = 0;
  length = 0;

  private ensure(k: number): void {
    if (this.n + k <= this.cur.length) return;
    this.flush();
    this.cur = new Uint8Array(Math.max(4096, k));
  }

  private flush(): void {
    if (this.n > 0) this.chunks.push(this.cur.subarray(0, this.n));
    this.cur = new Uint8Array(4096);
    this.n = 0;
  }

  varint(v: Int64): void {
    if (typeof v === 'number' && v >= 0 && v < 2 ** 53) {
      this.ensure(8);
      while (v >= 128) {
        this.cur[this.n++] = (v % 128) | 0x80;
        v = Math.floor(v / 128);
        this.length++;
      }
      this.cur[this.n++] = v;
      this.length++;
      return;
    }
    let big = BigInt.asUintN(64, BigInt(v));
    this.ensure(10);
    while (big >= 128n) {
      this.cur[this.n++] = Number(big & 0x7fn) | 0x80;
      big >>= 7n;
      this.length++;
    }
    this.cur[this.n++] = Number(big);
    this.length++;
  }

  tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  raw(bytes: Uint8Array): void {
    if (bytes.length > 1024) {
      this.flush();
      this.chunks.push(bytes);
    } else {
      this.ensure(bytes.length);
      this.cur.set(bytes, this.n);
      this.n += bytes.length;
    }
    this.length += bytes.length;
  }

  lenDelimited(field: number, bytes: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.varint(bytes.length);
    this.raw(bytes);
  }

  float32(v: number): void {
    this.ensure(4);
    new DataView(this.cur.buffer, this.cur.byteOffset + this.n, 4).setFloat32(0, v, true);
    this.n += 4;
    this.length += 4;
  }

  float64(v: number): void {
    this.ensure(8);
    new DataView(this.cur.buffer, this.cur.byteOffset + this.n, 8).setFloat64(0, v, true);
    this.n += 8;
    this.length += 8;
  }

  /** The chunks written so far, without joining them (for streaming very large models to disk). */
  parts(): Uint8Array[] {
    this.flush();
    return this.chunks;
  }

  finish(): Uint8Array {
    const parts = this.parts();
    if (parts.length === 1) return parts[0];
    const out = new Uint8Array(this.length);
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }
}
