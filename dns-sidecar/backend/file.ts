/**
 * The file backend: Network, NetworkAllocation and Node manifests (multi-document YAML, as `kubectl
 * apply -f` takes them) read from one file and re-read when it changes. For tests, the benchmark
 * and sites that want DNS without the API server.
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { loadAll } from 'js-yaml';
import type { Logger } from 'pino';
import type { Network, NetworkAllocation, Node } from '../../generated/crowbar.ts';
import { allocationIn, networkIn, nodeIn, type Backend, type Snapshot } from './backend.ts';

/** Reads the manifests of a file into a snapshot; other kinds are ignored. */
export function parseManifests(text: string): Snapshot {
  const snap: Snapshot = { networks: [], allocations: [], nodes: [] };
  for (const doc of loadAll(text)) {
    if (!doc || typeof doc !== 'object') continue;
    const kind = (doc as { kind?: unknown }).kind;
    if (kind === 'Network') snap.networks.push(networkIn(doc as Network));
    if (kind === 'NetworkAllocation') {
      const a = allocationIn(doc as NetworkAllocation);
      if (a) snap.allocations.push(a);
    }
    if (kind === 'Node') {
      const n = nodeIn(doc as Node);
      if (n) snap.nodes.push(n);
    }
  }
  return snap;
}

export class FileBackend implements Backend {
  private readonly path: string;
  private readonly log: Logger;
  private snap: Snapshot = { networks: [], allocations: [], nodes: [] };
  private loaded = false;
  private watcher: FSWatcher | undefined;

  constructor(path: string, log: Logger) {
    this.path = path;
    this.log = log.child({ backend: 'file', path });
  }

  private load(): boolean {
    try {
      this.snap = parseManifests(readFileSync(this.path, 'utf8'));
      this.loaded = true;
      return true;
    } catch (err) {
      this.log.error({ err }, 'cannot read the zone source file; keeping the last good one');
      return false;
    }
  }

  start(onChange: () => void): Promise<void> {
    if (!this.load()) return Promise.reject(new Error(`cannot read ${this.path}`));
    // Watch the directory, so that a file replaced by rename (how editors and tests write) is seen.
    this.watcher = watch(dirname(this.path), (_ev, name) => {
      if (name !== basename(this.path)) return;
      if (this.load()) onChange();
    });
    onChange();
    return Promise.resolve();
  }

  ready(): boolean {
    return this.loaded;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  stop(): Promise<void> {
    this.watcher?.close();
    return Promise.resolve();
  }
}
