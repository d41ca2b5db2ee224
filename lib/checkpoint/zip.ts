/**
 * Reads the records of a zip archive (torch.save's format, TorchScript archives) with yauzl,
 * which handles stored and deflated records and validates the central directory. Records are
 * read lazily, one by one and only when asked for: a checkpoint reads data.pkl and then only the
 * storages its tensors reference, so unreferenced (or hostile, huge) records cost nothing.
 * Stored records (torch.save compresses nothing) are read straight into their buffer from where
 * yauzl's local header check places them, not through a stream of chunks: a 600 MB checkpoint
 * left ~600 MB of 64 KiB chunk buffers for the garbage collector.
 */
import type { FileHandle } from 'node:fs/promises';
import { promises as fs } from 'node:fs';
import * as yauzl from 'yauzl';
import { readExactly } from '../files';

/** A record asked for after close(): a caller's mistake, not a damaged file. */
export class ArchiveClosedError extends Error {}

export class ZipArchive {
  private closed = false;

  private constructor(
    private readonly zip: yauzl.ZipFile,
    private readonly entries: Map<string, yauzl.Entry>,
    private readonly fh: FileHandle,
  ) {}

  /** Lists the central directory; a record name present twice is refused (torch would take the first). */
  static async open(path: string): Promise<ZipArchive> {
    const zip = await new Promise<yauzl.ZipFile>((resolve, reject) => {
      yauzl.open(path, { lazyEntries: true, autoClose: false, strictFileNames: false, validateEntrySizes: true }, (err, z) =>
        err || !z ? reject(err ?? new Error('cannot open zip')) : resolve(z),
      );
    });
    const entries = new Map<string, yauzl.Entry>();
    try {
      await new Promise<void>((resolve, reject) => {
        zip.on('error', reject);
        zip.on('end', () => resolve());
        zip.on('entry', (entry: yauzl.Entry) => {
          if (!entry.fileName.endsWith('/')) {
            if (entries.has(entry.fileName)) {
              reject(new Error(`record '${entry.fileName}' is present twice`));
              return;
            }
            entries.set(entry.fileName, entry);
          }
          zip.readEntry();
        });
        zip.readEntry();
      });
      return new ZipArchive(zip, entries, await fs.open(path, 'r'));
    } catch (err) {
      zip.close();
      throw err;
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** Uncompressed size the central directory declares (yauzl checks it while reading). */
  size(name: string): number | undefined {
    return this.entries.get(name)?.uncompressedSize;
  }

  /** A record's contents, or undefined when there is no such record. */
  async read(name: string): Promise<Buffer | undefined> {
    const entry = this.entries.get(name);
    if (!entry) return undefined;
    if (this.closed) throw new ArchiveClosedError(`record '${name}' asked for after the archive was closed`);
    if (entry.compressionMethod === 0 && !entry.isEncrypted()) {
      // yauzl checks the local header and that the data lies within the file
      const { fileDataStart } = await this.zip.readLocalFileHeaderPromise(entry, { minimal: true });
      return readExactly(this.fh, fileDataStart, entry.uncompressedSize);
    }
    return new Promise((resolve, reject) => {
      this.zip.openReadStream(entry, (err, stream) => {
        if (err || !stream) return reject(err ?? new Error('cannot read ' + name));
        // one buffer of the declared size, filled as chunks arrive: no concatenation of a
        // 100 MB record in one go on the event loop, and its own (aligned) memory, which
        // tensors can view without a copy. yauzl checks the size (validateEntrySizes).
        const out = Buffer.allocUnsafeSlow(entry.uncompressedSize);
        let at = 0;
        stream.on('data', (c: Buffer) => {
          if (at + c.length <= out.length) c.copy(out, at);
          at += c.length;
        });
        stream.on('error', reject);
        stream.on('end', () => (at === out.length ? resolve(out) : reject(new Error(`record '${name}' holds ${at} bytes, its header says ${out.length}`))));
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.zip.close();
    await this.fh.close();
  }
}

/** Is this file a zip archive (local file header magic)? */
export function isZipMagic(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32LE(0) === 0x04034b50;
}
