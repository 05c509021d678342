/**
 * Named event counters (messages by kind, drops by reason). The admin and
 * metrics layers read `snapshot()`. A counter is a cell in a Map; the
 * per-message path holds on to its cells (`cell()`, `CounterFamily`) so a
 * message costs one increment, not a name built and hashed (DESIGN.md §5.7).
 */
export interface CounterCell {
  value: number;
}

export class Counters {
  private readonly cells = new Map<string, CounterCell>();

  inc(name: string, by = 1): void {
    this.cell(name).value += by;
  }

  /** The cell of a counter, created at 0 on first use; keep it to count without a lookup. */
  cell(name: string): CounterCell {
    let c = this.cells.get(name);
    if (c === undefined) {
      c = { value: 0 };
      this.cells.set(name, c);
    }
    return c;
  }

  get(name: string): number {
    return this.cells.get(name)?.value ?? 0;
  }

  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const name of [...this.cells.keys()].sort((a, b) => a.localeCompare(b))) out[name] = this.cells.get(name)!.value;
    return out;
  }
}

/**
 * Counters named `prefix + key` for a key seen per message (a method, a
 * status code): the name is built once per key, on its first increment, so
 * a counter still appears only once something was counted.
 */
export class CounterFamily {
  private readonly byKey = new Map<string | number, CounterCell>();

  constructor(
    private readonly counters: Counters,
    private readonly prefix: string,
  ) {}

  inc(key: string | number): void {
    let c = this.byKey.get(key);
    if (c === undefined) {
      c = this.counters.cell(this.prefix + key);
      this.byKey.set(key, c);
    }
    c.value++;
  }
}
