/**
 * Reads the records of a zip archive (torch.save's format, TorchScript archives) with yauzl,
 * which handles stored and deflated records and validates the central directory.
 */
import * as yauzl from 'yauzl';

export interface ZipRecords {
  /** record name -> contents */
  records: Map<string, Buffer>;
}

function openZip(path: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.open(path, { lazyEntries: true, autoClose: false, strictFileNames: false, validateEntrySizes: true }, (err, zip) =>
      err || !zip ? reject(err ?? new Error('cannot open zip')) : resolve(zip),
    );
  });
}

function readEntry(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => {
      if (err || !stream) return reject(err ?? new Error('cannot read ' + entry.fileName));
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', reject);
      stream.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    });
  });
}

/** All records whose name passes `want` (default: all). */
export async function readZip(path: string, want: (name: string) => boolean = () => true): Promise<ZipRecords> {
  const zip = await openZip(path);
  const records = new Map<string, Buffer>();
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on('error', reject);
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        if (entry.fileName.endsWith('/') || !want(entry.fileName)) {
          zip.readEntry();
          return;
        }
        readEntry(zip, entry).then(
          (b) => {
            records.set(entry.fileName, b);
            zip.readEntry();
          },
          reject,
        );
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  return { records };
}

/** Is this file a zip archive (local file header magic)? */
export function isZipMagic(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32LE(0) === 0x04034b50;
}
