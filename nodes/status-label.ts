import type { Node } from 'node-red';

type Fill = 'red' | 'green' | 'yellow' | 'blue' | 'grey';
type Shape = 'ring' | 'dot';

/** How often a count in a status may change: a label for a person, not a meter (STYLE.md). */
export const STATUS_EVERY_MS = 250;

/**
 * A node's status, shown when it changes: a new colour, shape or message at once, a new count at
 * most every STATUS_EVERY_MS (the last one wins). The text is translated only when shown:
 * translating it on every message cost a quarter of the CPU when 10,000 devices were notified.
 */
export class StatusLabel {
  private shown = '';
  private shownKind = '';
  private shownAt = -Infinity;
  private pending: { fill: Fill; shape: Shape; key: string; params: Record<string, string | number> | undefined } | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly node: Node,
    private readonly translate: (key: string, params?: Record<string, string | number>) => string,
  ) {}

  show(fill: Fill, shape: Shape, key: string, params?: Record<string, string | number>): void {
    const kind = `${fill}/${shape}/${key}`;
    const signature = `${kind}/${params ? JSON.stringify(params) : ''}`;
    if (this.pending === null && signature === this.shown) return;
    const wait = this.shownAt + STATUS_EVERY_MS - Date.now();
    if (kind !== this.shownKind || wait <= 0) {
      this.render(fill, shape, key, params, kind, signature);
      return;
    }
    this.pending = { fill, shape, key, params };
    this.timer ??= setTimeout(() => {
      this.timer = null;
      const p = this.pending;
      if (p) this.show(p.fill, p.shape, p.key, p.params);
    }, wait);
  }

  /** Stops a count waiting to be shown (the node is closing). */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending = null;
  }

  private render(fill: Fill, shape: Shape, key: string, params: Record<string, string | number> | undefined, kind: string, signature: string): void {
    this.pending = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.shown = signature;
    this.shownKind = kind;
    this.shownAt = Date.now();
    this.node.status({ fill, shape, text: params ? this.translate(key, params) : key });
  }
}
