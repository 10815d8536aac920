// What a model family expects a checkpoint to store, checked against what it does store before anything is
// sized from config numbers. A family yields its tensors lazily, each dim labelled with the config field it
// comes from; checkStoredShapes walks them against the stored shapes and stops at the first disagreement, so a
// config.json saying 10⁹ layers or a head_dim of 2·10⁹ fails after at most (stored tensors + 1) steps, naming the
// file, the field and the stored tensor.

/** A dim and the config field (or expression of fields) it comes from. */
export type Dim = readonly [value: number, field: string];

export interface ExpectedTensor {
  name: string;
  dims: readonly Dim[];
  /** The config field that makes this tensor exist: num_hidden_layers for a block's tensors, a bias flag, …. */
  because?: string;
}

/** A tensor as the checkpoint stores it. */
export interface StoredTensor {
  shape: readonly number[];
  file: string;
}

export function expected(name: string, dims: readonly Dim[], because?: string): ExpectedTensor {
  return { name, dims, ...(because ? { because } : {}) };
}

/** The dims of every tensor by name (for a builder, once the config has passed checkStoredShapes). */
export function shapesOf(tensors: Iterable<ExpectedTensor>): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const t of tensors) out.set(t.name, t.dims.map(([v]) => v));
  return out;
}

/** The field with the values the config gives its keys: `num_attention_heads · head_dim (num_attention_heads = 8,
 *  head_dim = 2000000000)`; `field (= value)` for one key. */
function describeField(config: Readonly<Record<string, unknown>>, field: string): string {
  const value = (k: string) => JSON.stringify(config[k])?.slice(0, 40);
  if (Object.hasOwn(config, field)) return `${field} (= ${value(field)})`;
  const given = [...new Set(field.match(/[A-Za-z_]\w*/g))].filter((k) => Object.hasOwn(config, k));
  return given.length ? `${field} (${given.map((k) => `${k} = ${value(k)}`).join(', ')})` : field;
}

/**
 * Checks each expected tensor against `stored`, in the family's order, and returns their dims by name. Throws at
 * the first one that is missing or shaped otherwise: `<configFile>: num_hidden_layers (= 1000000) needs tensor
 * 'model.layers.2.input_layernorm.weight', which the checkpoint does not store`.
 */
export function checkStoredShapes(
  configFile: string,
  config: Readonly<Record<string, unknown>>,
  tensors: Iterable<ExpectedTensor>,
  stored: ReadonlyMap<string, StoredTensor>,
): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const t of tensors) {
    const s = stored.get(t.name);
    if (!s) {
      const why = t.because ? describeField(config, t.because) : `model_type ${JSON.stringify(config.model_type)}`;
      throw new Error(`${configFile}: ${why} needs tensor '${t.name}', which the checkpoint does not store`);
    }
    const dims = t.dims.map(([v]) => v);
    if (s.shape.length !== dims.length) {
      throw new Error(`${configFile}: tensor '${t.name}' should have ${dims.length} dims [${dims.join(', ')}], ${s.file} stores [${s.shape.join(', ')}]`);
    }
    const k = dims.findIndex((d, i) => d !== s.shape[i]);
    if (k >= 0) {
      throw new Error(`${configFile}: ${describeField(config, t.dims[k][1])} gives ${dims[k]} for dim ${k} of '${t.name}', but ${s.file} stores it as [${s.shape.join(', ')}]`);
    }
    out.set(t.name, dims);
  }
  return out;
}
