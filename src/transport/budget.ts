/**
 * Connection accounting shared by every stream listener and outbound
 * connection: a cap on sockets open at once and, for inbound sockets, a cap
 * per source address (DESIGN.md §2.8), checked at accept time so a flood
 * costs no TLS handshake or WebSocket upgrade.
 */
export type AdmitVerdict = "ok" | "max-connections" | "per-source-limit";

export class ConnectionBudget {
  private open = 0;
  private readonly perSource = new Map<string, number>();

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerSource: number,
  ) {}

  get total(): number {
    return this.open;
  }

  admitInbound(source: string): AdmitVerdict {
    if (this.open >= this.maxTotal) return "max-connections";
    const n = this.perSource.get(source) ?? 0;
    if (n >= this.maxPerSource) return "per-source-limit";
    this.perSource.set(source, n + 1);
    this.open++;
    return "ok";
  }

  releaseInbound(source: string): void {
    const n = this.perSource.get(source) ?? 0;
    if (n <= 1) this.perSource.delete(source);
    else this.perSource.set(source, n - 1);
    if (this.open > 0) this.open--;
  }

  admitOutbound(): boolean {
    if (this.open >= this.maxTotal) return false;
    this.open++;
    return true;
  }

  releaseOutbound(): void {
    if (this.open > 0) this.open--;
  }
}
