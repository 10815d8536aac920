// Config field checks shared by the Hugging Face families: each error names the family and the field.

/** A config field that must be a positive integer, or an error naming the family and the field. */
export function configPositiveInt(family: string, value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new Error(`${family} config: ${field} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** A config field that must be a finite positive number. */
export function configFinitePositive(family: string, value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new Error(`${family} config: ${field} must be a positive number, got ${JSON.stringify(value)}`);
  }
  return value;
}
