/** Small, allocation-light statistics helpers shared by every scenario. */

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Nearest-rank percentile of values (sorted in place). `p` in [0, 100]. */
export function percentile(values: number[] | Float64Array, p: number): number {
  if (values.length === 0) return NaN;
  values.sort((a, b) => a - b);
  const rank = Math.min(values.length - 1, Math.max(0, Math.ceil((p / 100) * values.length) - 1));
  return values[rank];
}

/** Growable list of latencies in ms, stored in a typed array so recording does not allocate per sample. */
export class Samples {
  private data = new Float64Array(1024);
  length = 0;

  push(value: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = value;
  }

  pushAll(values: Iterable<number>): void {
    for (const value of values) this.push(value);
  }

  values(): Float64Array {
    return this.data.subarray(0, this.length);
  }

  percentile(p: number): number {
    return percentile(this.data.subarray(0, this.length), p);
  }
}

export function ratio(value: number, reference: number): number {
  return reference === 0 ? NaN : value / reference;
}
