/**
 * Files the package reads and writes. Inputs: only regular files are opened for reading (a
 * device or FIFO would never end). Outputs: Node's `mkdir(..., { recursive: true })` never
 * settles under /proc (it loops at 80% CPU on `/proc/nope/x`), so folders are made one level at
 * a time from the nearest existing ancestor, and any failure names the folder asked for; writes
 * go through a temp file renamed into place.
 */
import { promises as fs, constants as fsConstants } from 'node:fs';
import * as path from 'node:path';

/**
 * Opens `file` for reading if it is a regular file; devices (`/dev/zero`), FIFOs, folders and
 * sockets are refused before a byte is read. `fail(message)` builds the error thrown.
 */
export async function openRegularFile(
  file: string,
  fail: (message: string, cause?: unknown) => Error,
): Promise<{ fh: fs.FileHandle; size: number }> {
  let fh: fs.FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO for reading must not wait for a writer before the check below.
    fh = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EISDIR' ? 'a folder, not a file' : e.message;
    throw fail(`cannot open: ${why}`, err);
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    const kind = st.isDirectory() ? 'a folder' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : 'not a regular file';
    throw fail(`cannot read: ${kind}, not a regular file`);
  }
  return { fh, size: st.size };
}

/**
 * `length` bytes at `position` of an open file, in memory of their own (never Node's shared
 * pool); throws when the file ends before them, i.e. it changed after it was opened and checked.
 */
export async function readExactly(fh: fs.FileHandle, position: number, length: number): Promise<Buffer> {
  const out = Buffer.allocUnsafeSlow(length);
  for (let at = 0; at < length; ) {
    const { bytesRead } = await fh.read(out, at, length - at, position + at);
    if (bytesRead === 0) throw new Error(`the file ends ${length - at} bytes early (it changed while being read?)`);
    at += bytesRead;
  }
  return out;
}

/**
 * Make `dir` and its missing parents; `fail(message)` builds the error thrown on failure.
 * Returns the folders it made, outermost first, for `removeMadeDirs` when the write that
 * needed them fails.
 */
export async function ensureDir(dir: string, fail: (message: string, cause?: unknown) => Error): Promise<string[]> {
  const target = path.resolve(dir);
  const missing: string[] = [];
  let at = target;
  for (;;) {
    const st = await fs.stat(at).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' || err.code === 'ENOTDIR' ? undefined : Promise.reject(err))).catch((err) => {
      throw fail(`cannot create folder ${target}: ${(err as Error).message}`, err);
    });
    if (st) {
      if (!st.isDirectory()) throw fail(`cannot create folder ${target}: ${at} is not a folder`);
      break;
    }
    missing.unshift(at);
    const parent = path.dirname(at);
    if (parent === at) break;
    at = parent;
  }
  const made: string[] = [];
  for (const d of missing) {
    try {
      await fs.mkdir(d);
      made.push(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue; // made meanwhile
      await removeMadeDirs(made);
      throw fail(`cannot create folder ${target}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} at ${d}`, err);
    }
  }
  return made;
}

/** Remove folders ensureDir made, innermost first, where they are still empty. */
export async function removeMadeDirs(made: string[]): Promise<void> {
  for (const d of [...made].reverse()) await fs.rmdir(d).catch(() => undefined);
}

/**
 * Write `file` atomically: `write` fills a temp file beside it, which is then renamed over it,
 * so readers see the old file or the new one, never half of one. On failure the temp file is
 * removed and `fail` gets a message about `file` itself (not the temp file the error came from).
 */
export async function writeAtomically(file: string, write: (tmp: string) => Promise<void>, fail: (message: string, cause: unknown) => Error): Promise<void> {
  const st = await fs.stat(file).catch(() => undefined);
  if (st?.isDirectory()) throw fail('cannot write: a folder of that name exists', undefined);
  await removeStaleTempFiles(file);
  const tmp = tempFileFor(file);
  try {
    await write(tmp);
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    const e = err as NodeJS.ErrnoException;
    throw fail(`cannot write: ${e.code ? `${e.code} (${e.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '')})` : e.message}`, err);
  }
}

/** The temp file a write of `file` goes through before its atomic rename: `.<name>.<pid>.<time>.tmp` beside it. */
export function tempFileFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
}

/**
 * Delete temp files of `file` left by writers that died (kill -9, power loss): ours by name,
 * and only those whose process is gone, so a concurrent writer's file is left alone.
 */
export async function removeStaleTempFiles(file: string): Promise<void> {
  const dir = path.dirname(file);
  const prefix = `.${path.basename(file)}.`;
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  for (const n of names) {
    const m = n.startsWith(prefix) ? /^(\d+)\.\d+\.tmp$/.exec(n.slice(prefix.length)) : null;
    if (!m || isAlive(Number(m[1]))) continue;
    await fs.rm(path.join(dir, n), { force: true });
  }
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
