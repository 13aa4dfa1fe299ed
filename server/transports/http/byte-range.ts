import rangeParser from 'range-parser';

/**
 * A download's `Range` header read by range-parser (the parser Express itself uses), for a
 * representation of `length` bytes (the whole package, or one chunk of it):
 * - null: serve the whole representation: no Range, a unit other than bytes, a malformed header,
 *   or several ranges (RFC 9110 §14.2 lets a server ignore Range; we do not send multipart/byteranges);
 * - 'unsatisfiable': for a 416;
 * - the one range, inclusive.
 */
export function byteRange(header: string | undefined, length: number): { start: number; end: number } | 'unsatisfiable' | null {
  if (!header || length <= 0) return null;
  // RFC 9110 §14.1.2: a suffix longer than the representation means all of it; range-parser
  // refuses it as unsatisfiable, so it is clamped first.
  const suffix = /^\s*bytes\s*=\s*-\s*(\d+)\s*$/i.exec(header);
  const asked = suffix && Number(suffix[1]) > length ? `bytes=-${length}` : header;
  const ranges = rangeParser(length, asked, { combine: true });
  if (ranges === -2) return null;
  if (ranges === -1) return 'unsatisfiable';
  if (ranges.type !== 'bytes' || ranges.length !== 1) return null;
  const [only] = ranges as unknown as [{ start: number; end: number }];
  return { start: only.start, end: only.end };
}
