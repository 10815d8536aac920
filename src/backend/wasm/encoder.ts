// Why hand-written: binaryen and wabt (npm) are whole WebAssembly toolchains shipped as large compiled modules, for
// what is here two small kernels' worth of opcodes emitted at runtime.
// A minimal WebAssembly binary encoder: enough to emit a small numeric kernel from TypeScript at runtime, so
// the repository needs no wasm toolchain and holds no binary. A kernel is one exported function that works
// on an imported memory (`env.memory`). Instructions are appended in stack order; `forRange` gives the one
// loop shape the kernels need. Opcodes: WebAssembly core spec 2.0, SIMD proposal (0xFD prefix).

export type ValType = 'i32' | 'f64' | 'v128';
const TYPE_CODE: Record<ValType, number> = { i32: 0x7f, f64: 0x7c, v128: 0x7b };

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const utf8 = (s: string): number[] => {
  const bytes = Buffer.from(s, 'utf8');
  return [...uleb(bytes.length), ...bytes];
};
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

/** A v128 of two float64 or four float32 lanes. */
export type LaneKind = 'f64x2' | 'f32x4';

/** Lanes (= elements) per v128, and log2 of the element size in bytes. */
export const LANES: Record<LaneKind, { lanes: 2 | 4; shift: 3 | 2 }> = { f64x2: { lanes: 2, shift: 3 }, f32x4: { lanes: 4, shift: 2 } };

export class FunctionBuilder {
  private readonly code: number[] = [];
  private readonly locals: ValType[] = [];

  constructor(readonly params: ValType[], readonly results: ValType[]) {}

  /** A new local of the given type; returns its index. */
  local(type: ValType): number {
    this.locals.push(type);
    return this.params.length + this.locals.length - 1;
  }

  private op(...bytes: number[]): this {
    for (const b of bytes) this.code.push(b);
    return this;
  }
  private simd(opcode: number, ...imm: number[]): this {
    return this.op(0xfd, ...uleb(opcode), ...imm);
  }

  get(i: number): this { return this.op(0x20, ...uleb(i)); }
  set(i: number): this { return this.op(0x21, ...uleb(i)); }
  tee(i: number): this { return this.op(0x22, ...uleb(i)); }

  i32(c: number): this { return this.op(0x41, ...sleb(c)); }
  i32Add(): this { return this.op(0x6a); }
  i32Sub(): this { return this.op(0x6b); }
  i32Mul(): this { return this.op(0x6c); }
  i32And(): this { return this.op(0x71); }
  i32Shl(): this { return this.op(0x74); }
  i32Eqz(): this { return this.op(0x45); }
  i32Eq(): this { return this.op(0x46); }
  i32LtS(): this { return this.op(0x48); }
  i32GtS(): this { return this.op(0x4a); }
  i32GeS(): this { return this.op(0x4e); }
  /** i32.load, byte address on the stack plus a constant offset. */
  i32Load(offset = 0): this { return this.op(0x28, 2, ...uleb(offset)); }
  i32Store(offset = 0): this { return this.op(0x36, 2, ...uleb(offset)); }
  /** i32.load8_u / i32.store8: one byte (a mask entry). */
  i32Load8U(offset = 0): this { return this.op(0x2d, 0, ...uleb(offset)); }
  i32Store8(offset = 0): this { return this.op(0x3a, 0, ...uleb(offset)); }

  f64(c: number): this {
    const b = new Uint8Array(new Float64Array([c]).buffer);
    return this.op(0x44, ...b);
  }
  f64Load(offset = 0): this { return this.op(0x2b, 3, ...uleb(offset)); }
  f64Store(offset = 0): this { return this.op(0x39, 3, ...uleb(offset)); }
  f64Lt(): this { return this.op(0x63); }
  f64Sub(): this { return this.op(0xa1); }
  f64Mul(): this { return this.op(0xa2); }
  f64Div(): this { return this.op(0xa3); }

  v128Load(offset = 0): this { return this.simd(0x00, 4, ...uleb(offset)); }
  v128Store(offset = 0): this { return this.simd(0x0b, 4, ...uleb(offset)); }
  f64x2Splat(): this { return this.simd(0x14); }
  f64x2ExtractLane(lane: 0 | 1): this { return this.simd(0x21, lane); }
  f64x2ReplaceLane(lane: 0 | 1): this { return this.simd(0x22, lane); }
  f64x2Gt(): this { return this.simd(0x4a); }
  i64x2AllTrue(): this { return this.simd(0xc3); }
  f64x2Sqrt(): this { return this.simd(0xef); }
  f64x2Add(): this { return this.simd(0xf0); }
  f64x2Sub(): this { return this.simd(0xf1); }
  f64x2Mul(): this { return this.simd(0xf2); }
  f64x2Div(): this { return this.simd(0xf3); }

  f32(c: number): this {
    const b = new Uint8Array(new Float32Array([c]).buffer);
    return this.op(0x43, ...b);
  }
  f32Load(offset = 0): this { return this.op(0x2a, 2, ...uleb(offset)); }
  f32x4Splat(): this { return this.simd(0x13); }
  f32x4ExtractLane(lane: 0 | 1 | 2 | 3): this { return this.simd(0x1f, lane); }
  f32x4ReplaceLane(lane: 0 | 1 | 2 | 3): this { return this.simd(0x20, lane); }
  f32x4Gt(): this { return this.simd(0x44); }
  i32x4AllTrue(): this { return this.simd(0xa3); }
  f32x4Sqrt(): this { return this.simd(0xe3); }
  f32x4Add(): this { return this.simd(0xe4); }
  f32x4Sub(): this { return this.simd(0xe5); }
  f32x4Mul(): this { return this.simd(0xe6); }
  f32x4Div(): this { return this.simd(0xe7); }

  // Lane-generic float vectors: the same kernel source for two float64 lanes or four float32 lanes.
  /** Scalar load of one lane's type. */
  fxLoad(k: LaneKind, offset = 0): this { return k === 'f64x2' ? this.f64Load(offset) : this.f32Load(offset); }
  /** A vector with every lane = c. */
  fxConst(k: LaneKind, c: number): this { return k === 'f64x2' ? this.f64(c).f64x2Splat() : this.f32(c).f32x4Splat(); }
  fxSplat(k: LaneKind): this { return k === 'f64x2' ? this.f64x2Splat() : this.f32x4Splat(); }
  fxReplaceLane(k: LaneKind, lane: number): this { return k === 'f64x2' ? this.f64x2ReplaceLane(lane as 0 | 1) : this.f32x4ReplaceLane(lane as 0 | 1 | 2 | 3); }
  fxExtractLane(k: LaneKind, lane: number): this { return k === 'f64x2' ? this.f64x2ExtractLane(lane as 0 | 1) : this.f32x4ExtractLane(lane as 0 | 1 | 2 | 3); }
  /** 1 if every lane of a > b, else 0 (a, b on the stack). */
  fxAllGt(k: LaneKind): this { return k === 'f64x2' ? this.f64x2Gt().i64x2AllTrue() : this.f32x4Gt().i32x4AllTrue(); }
  fxSqrt(k: LaneKind): this { return k === 'f64x2' ? this.f64x2Sqrt() : this.f32x4Sqrt(); }
  fxAdd(k: LaneKind): this { return k === 'f64x2' ? this.f64x2Add() : this.f32x4Add(); }
  fxSub(k: LaneKind): this { return k === 'f64x2' ? this.f64x2Sub() : this.f32x4Sub(); }
  fxMul(k: LaneKind): this { return k === 'f64x2' ? this.f64x2Mul() : this.f32x4Mul(); }
  fxDiv(k: LaneKind): this { return k === 'f64x2' ? this.f64x2Div() : this.f32x4Div(); }

  /** if (top of stack ≠ 0) { then() } */
  if(then: () => void): this {
    this.op(0x04, 0x40);
    then();
    return this.op(0x0b);
  }
  /** if (top of stack ≠ 0) { then() } else { otherwise() } */
  ifElse(then: () => void, otherwise: () => void): this {
    this.op(0x04, 0x40);
    then();
    this.op(0x05);
    otherwise();
    return this.op(0x0b);
  }
  return(): this { return this.op(0x0f); }

  /** for (v = from; v < to; v += step) body — `from`, `to` push an i32; `to` is re-evaluated every iteration. */
  forRange(v: number, from: () => void, to: () => void, step: number, body: () => void): this {
    from();
    this.set(v);
    this.op(0x02, 0x40, 0x03, 0x40); // block, loop
    this.get(v);
    to();
    this.i32GeS().op(0x0d, 1); // br_if to the block's end
    body();
    this.get(v).i32(step).i32Add().set(v);
    return this.op(0x0c, 0, 0x0b, 0x0b); // br to the loop, end loop, end block
  }

  /** The code section entry: locals then the body. */
  encode(): number[] {
    const groups: number[][] = [];
    for (let i = 0; i < this.locals.length;) {
      let j = i;
      while (j < this.locals.length && this.locals[j] === this.locals[i]) j++;
      groups.push([...uleb(j - i), TYPE_CODE[this.locals[i]]]);
      i = j;
    }
    const body = [...vec(groups), ...this.code, 0x0b];
    return [...uleb(body.length), ...body];
  }
}

/** A module that imports `env.memory` and exports one function under `name`. */
export function encodeModule(name: string, fn: FunctionBuilder): Uint8Array<ArrayBuffer> {
  const funcType = [0x60, ...vec(fn.params.map((t) => [TYPE_CODE[t]])), ...vec(fn.results.map((t) => [TYPE_CODE[t]]))];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([funcType])),
    ...section(2, vec([[...utf8('env'), ...utf8('memory'), 0x02, 0x00, 0x01]])), // memory, min 1 page
    ...section(3, vec([[0]])),
    ...section(7, vec([[...utf8(name), 0x00, 0]])),
    ...section(10, vec([fn.encode()])),
  ];
  return Uint8Array.from(bytes);
}
