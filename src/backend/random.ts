// The project's one seeded generator: mulberry32, so a seed gives the same numbers on every machine (calibration
// windows, synthetic and demo weights, the mask threshold's sample, the tests' random problems).

/** mulberry32 uniforms in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A mulberry32 stream read as uniforms in (0, 1) (never 0: log(u) is finite) and Box–Muller standard normals. */
export class SeededRandom {
  private readonly next: () => number;
  private spare: number | undefined;

  constructor(seed: number) {
    this.next = mulberry32(seed);
  }

  uniform(): number {
    return this.next() + 2 ** -33;
  }

  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const a = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(a);
    return r * Math.cos(a);
  }
}

/** Standard normals from `seed`. */
export function normalRng(seed: number): () => number {
  const r = new SeededRandom(seed);
  return () => r.normal();
}
