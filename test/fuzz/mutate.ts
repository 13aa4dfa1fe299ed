import fc from 'fast-check';

/** A byte-level mutation of a well-formed frame: what a fuzzer does to reach past the first check. */
export type Mutation =
  { kind: 'none' } | { kind: 'flip'; at: number[]; xor: number[] } | { kind: 'cut'; at: number } | { kind: 'insert'; at: number; bytes: Uint8Array } | { kind: 'repeat' };

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Mutation>({ kind: 'none' }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('flip' as const),
      at: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
      xor: fc.array(fc.integer({ min: 1, max: 255 }), { minLength: 4, maxLength: 4 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
  { weight: 1, arbitrary: fc.constant<Mutation>({ kind: 'repeat' }) },
);

export function mutate(frame: Buffer, m: Mutation): Buffer {
  if (frame.length === 0) return frame;
  switch (m.kind) {
    case 'none':
      return frame;
    case 'flip': {
      const out = Buffer.from(frame);
      m.at.forEach((a, i) => {
        const at = a % out.length;
        out[at] = (out[at] as number) ^ (m.xor[i] ?? 1);
      });
      return out;
    }
    case 'cut':
      return frame.subarray(0, m.at % frame.length);
    case 'insert': {
      const at = m.at % (frame.length + 1);
      return Buffer.concat([frame.subarray(0, at), Buffer.from(m.bytes), frame.subarray(at)]);
    }
    case 'repeat':
      return Buffer.concat([frame, frame]);
  }
}
