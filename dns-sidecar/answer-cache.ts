/**
 * A cache of finished wire responses, so that a repeated question costs a map lookup and a copy
 * instead of decode, resolve and encode. The key is the query's bytes after its ID (flags, counts,
 * the question exactly as spelled, so 0x20 case is kept, and the EDNS OPT record), plus the
 * transport; everything else a response depends on is the zone set, so the cache belongs to one
 * zone set and is emptied when a rebuild swaps in another. dns-packet stays the codec: the cache
 * only keeps what the handler encoded.
 *
 * Bounded in bytes with two generations: new entries go into the young map; when it holds half the
 * budget it becomes the old map and the previous old map is dropped. A hit in the old map is
 * copied into the young one, so what is asked for stays and a flood of one-off questions (a scan,
 * a fuzzer) pushes out at most one generation.
 */

/** A cached answer: the response as encoded for the first query (its ID is rewritten per query). */
export interface CachedAnswer {
  response: Buffer;
}

/** Bytes of bookkeeping counted per entry besides the key and the response (Map slot, object). */
const ENTRY_OVERHEAD = 96;

export class AnswerCache<E extends CachedAnswer = CachedAnswer, Owner = unknown> {
  private young = new Map<string, E>();
  private old = new Map<string, E>();
  private youngBytes = 0;
  private readonly generationBytes: number;
  private owner: Owner | undefined;
  /** Hits and misses since start (read by the metrics collector). */
  hits = 0;
  misses = 0;

  /** @param maxBytes the most the cache may hold, keys and responses counted. */
  constructor(maxBytes: number) {
    this.generationBytes = Math.max(1, Math.floor(maxBytes / 2));
  }

  /**
   * Makes the cache belong to `owner` (the zone set being served): if it belonged to another,
   * everything in it is dropped, since answers from the old zones may be stale.
   */
  use(owner: Owner): void {
    if (owner === this.owner) return;
    this.owner = owner;
    this.clear();
  }

  clear(): void {
    this.young = new Map();
    this.old = new Map();
    this.youngBytes = 0;
  }

  /** Entries held now (both generations; an entry may be in both for a moment). */
  get size(): number {
    return this.young.size + this.old.size;
  }

  get(key: string): E | undefined {
    let a = this.young.get(key);
    if (a !== undefined) {
      this.hits++;
      return a;
    }
    a = this.old.get(key);
    if (a !== undefined) {
      this.hits++;
      this.put(key, a);
      return a;
    }
    this.misses++;
    return undefined;
  }

  set(key: string, answer: E): void {
    if (this.young.has(key)) return;
    this.put(key, answer);
  }

  private put(key: string, answer: E): void {
    const bytes = key.length + answer.response.length + ENTRY_OVERHEAD;
    if (bytes > this.generationBytes) return;
    if (this.youngBytes + bytes > this.generationBytes) {
      this.old = this.young;
      this.young = new Map();
      this.youngBytes = 0;
    }
    this.young.set(key, answer);
    this.youngBytes += bytes;
  }
}
