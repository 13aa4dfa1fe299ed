import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import busboy from 'busboy';
import type { StagedBlob } from '../store/blob-store';
import { parseChecksumAlgorithm, type ChecksumAlgorithm } from '../packages/checksum';
import { invalid } from '../errors';

export interface ReceivedUpload {
  fields: Record<string, string>;
  file: { staged: StagedBlob; fileName: string; contentType: string } | null;
}

export interface UploadSink {
  /** The algorithm named in the query, so it can be computed while the bytes stream in. */
  algorithmHint: ChecksumAlgorithm | null;
  stage(source: Readable, algorithm: ChecksumAlgorithm | null): Promise<StagedBlob>;
  discard(staged: StagedBlob): Promise<void>;
}

/**
 * Reads a multipart request: text fields, and the part named `file` streamed straight into the
 * blob store's staging area (never buffered). Settles once, with the staged file or the first
 * error; a staged file is discarded when the rest of the request turns out bad.
 */
/** An upload whose sender goes quiet this long is cut, so its socket and temp file don't linger. */
export const UPLOAD_IDLE_MS = 60_000;

export function receiveUpload(req: IncomingMessage, sink: UploadSink, idleMs = UPLOAD_IDLE_MS): Promise<ReceivedUpload> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: req.headers, limits: { fields: 64, fieldSize: 64 * 1024, files: 8, parts: 128 } });
    } catch {
      reject(invalid('Current request is not a multipart request'));
      return;
    }
    const fields: Record<string, string> = {};
    let staging: Promise<StagedBlob> | null = null;
    let fileStream: Readable | null = null;
    let fileInfo: { fileName: string; contentType: string } | null = null;
    let settled = false;

    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      req.unpipe(parser);
      req.resume(); // let the rest of the body drain; the response closes the connection
      // A file part still streaming will never end once the body stops coming (a client gone
      // mid-upload): end it with the error, so staging fails and removes its temporary file.
      fileStream?.destroy(err instanceof Error ? err : new Error(String(err)));
      staging?.then((s) => sink.discard(s)).catch(() => undefined);
      reject(err);
    };

    parser.on('field', (name, value) => {
      fields[name] = value;
    });
    parser.on('file', (name, stream, info) => {
      // busboy ends a part cut short with an 'error' on its stream ("Unexpected end of form"):
      // without a listener that is an uncaught exception, so every part gets one (found by
      // fuzzing). The parser's own 'error' below says what went wrong.
      stream.on('error', () => undefined);
      if (name !== 'file') {
        stream.resume();
        return;
      }
      if (staging) {
        // Which of two files would be the package? Refused rather than guessed (issue 10, item 9).
        stream.resume();
        fail(invalid("Only one 'file' part is allowed"));
        return;
      }
      // Fields sent before the file name the algorithm early enough to hash while streaming.
      const algorithm = sink.algorithmHint ?? parseChecksumAlgorithm(fields.checksumAlgorithm ?? '') ?? null;
      fileInfo = { fileName: info.filename ?? '', contentType: info.mimeType ?? '' };
      fileStream = stream;
      staging = sink.stage(stream, algorithm);
      staging.catch(fail);
    });
    parser.on('error', (err: Error) => fail(invalid(`Failed to parse multipart request: ${err.message}`)));
    // The server has no overall request timeout (2 GB uploads take time), so a silent sender is cut here.
    req.setTimeout(idleMs, () => req.destroy());
    // The connection closed before the whole body arrived.
    req.once('close', () => {
      if (!req.complete) fail(invalid('The upload was interrupted'));
    });
    parser.on('close', () => {
      if (settled) return;
      if (!staging || !fileInfo) {
        settled = true;
        resolve({ fields, file: null });
        return;
      }
      const info = fileInfo;
      staging.then((staged) => {
        if (settled) {
          void sink.discard(staged);
          return;
        }
        settled = true;
        resolve({ fields, file: { staged, ...info } });
      }, fail);
    });
    req.pipe(parser);
  });
}
