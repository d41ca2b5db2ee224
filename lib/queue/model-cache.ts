/**
 * The models a worker keeps loaded for predict and evaluate jobs: at most `capacity`, least
 * recently used out first, a model never disposed while a job uses it, and a file replaced on
 * disk (a retrained model) loaded anew.
 */
import { promises as fs } from 'node:fs';
import { InpFormer } from '../model/model';
import type { LoadOptions } from '../model/options';

interface Entry {
  /** the file's identity when it was loaded */
  stamp: string;
  model: Promise<InpFormer>;
  users: number;
  lastUsed: number;
  /** replaced by a newer file: disposed once its last user is done */
  stale: boolean;
}

export class ModelCache {
  #entries = new Map<string, Entry>();
  #retired = new Set<Entry>();

  constructor(private readonly capacity: number, private readonly options: LoadOptions) {}

  /** The model of `file`, loaded or kept; call the returned release() when done with it. */
  async acquire(file: string): Promise<{ model: InpFormer; release: () => Promise<void> }> {
    const st = await fs.stat(file).catch(() => undefined);
    // a missing file goes on to load(), whose CheckpointError names it
    const stamp = st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}` : 'missing';
    let entry = this.#entries.get(file);
    if (entry && entry.stamp !== stamp) {
      this.#entries.delete(file);
      this.#retire(entry);
      entry = undefined;
    }
    if (!entry) {
      entry = { stamp, model: InpFormer.load(file, this.options), users: 0, lastUsed: 0, stale: false };
      this.#entries.set(file, entry);
      entry.model.catch(() => this.#entries.get(file) === entry && this.#entries.delete(file)); // a failed load is not kept
    }
    entry.users++;
    entry.lastUsed = Date.now();
    const held = entry;
    let model: InpFormer;
    try {
      model = await held.model;
    } catch (err) {
      held.users--;
      throw err;
    }
    await this.#evict();
    let released = false;
    return {
      model,
      release: async () => {
        if (released) return;
        released = true;
        held.users--;
        if (held.stale) await this.#retire(held);
        else await this.#evict();
      },
    };
  }

  /** Dispose every model (the worker is closing; no job runs). */
  async close(): Promise<void> {
    const all = [...this.#entries.values(), ...this.#retired];
    this.#entries.clear();
    this.#retired.clear();
    await Promise.all(all.map((e) => e.model.then((m) => m.dispose(), () => undefined)));
  }

  async #retire(entry: Entry): Promise<void> {
    entry.stale = true;
    this.#retired.add(entry);
    if (entry.users > 0) return;
    this.#retired.delete(entry);
    await entry.model.then((m) => m.dispose(), () => undefined);
  }

  async #evict(): Promise<void> {
    while (this.#entries.size > this.capacity) {
      const idle = [...this.#entries].filter(([, e]) => e.users === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed)[0];
      if (!idle) return; // all in use: over capacity until one is released
      this.#entries.delete(idle[0]);
      await this.#retire(idle[1]);
    }
  }
}
