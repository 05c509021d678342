/**
 * Named event counters (messages by kind, drops by reason). The admin and
 * metrics layers read `snapshot()`; incrementing is one Map update, so it is
 * cheap enough for the per-message path.
 */
export class Counters {
  private readonly counts = new Map<string, number>();

  inc(name: string, by = 1): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + by);
  }

  get(name: string): number {
    return this.counts.get(name) ?? 0;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.counts.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }
}
