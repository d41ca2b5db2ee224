/**
 * Creating output folders. Node's `mkdir(..., { recursive: true })` never settles under /proc
 * (it loops at 80% CPU on `/proc/nope/x`), so folders are made one level at a time from the
 * nearest existing ancestor, and any failure names the folder asked for.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

/** Make `dir` and its missing parents; `fail(message)` builds the error thrown on failure. */
export async function ensureDir(dir: string, fail: (message: string, cause?: unknown) => Error): Promise<void> {
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
  for (const d of missing) {
    try {
      await fs.mkdir(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue; // made meanwhile
      throw fail(`cannot create folder ${target}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} at ${d}`, err);
    }
  }
}
