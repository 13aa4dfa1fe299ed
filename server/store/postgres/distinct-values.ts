import type { DeviceId } from '../../ids';

/**
 * The distinct values of a batch write, each numbered from 1 (as `WITH ORDINALITY` numbers them),
 * so a statement parses each once and its rows name one by number: the devices of a fan-out
 * share the same few values.
 */
export class DistinctValues<V extends object> {
  readonly list: V[] = [];
  private readonly numbers = new Map<string, number>();

  /** The number of `value`, adding it when new. */
  number(value: V): number {
    const id = JSON.stringify(Object.values(value));
    let n = this.numbers.get(id);
    if (n === undefined) {
      this.list.push(value);
      this.numbers.set(id, (n = this.list.length));
    }
    return n;
  }
}

/** Rows of a batch write: a device and the number of its value, in two parallel arrays (unnest's input). */
export interface Rows {
  devices: DeviceId[];
  values: number[];
}
