/**
 * The discovery pool: dynamic addresses for machines the API does not know yet, from a Network's
 * `dhcp` range. Identity is the MAC (chaddr), never the client identifier (ANCHORS §7.1).
 *
 * Every change is appended to a journal (one JSON object per line, like Kea's memfile) before the
 * reply leaves, so a restarted sidecar never hands a held address to a second MAC. The journal is
 * compacted (rewritten from memory to a temporary file, then renamed over the old one) when it
 * holds many more lines than live leases.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync } from 'node:fs';
import { writeSync } from 'node:fs';
import { intToIp, ipToInt } from './codec.ts';

export type LeaseState = 'offered' | 'bound' | 'released';

export interface Lease {
  mac: string;
  address: string;
  state: LeaseState;
  /** Epoch ms after which the address is free again. */
  expires: number;
}

interface Entry {
  op: 'lease' | 'free' | 'decline';
  mac?: string;
  address: string;
  state?: LeaseState;
  expires: number;
}

export interface PoolOptions {
  first: string;
  last: string;
  /** Journal file; no persistence when undefined. */
  journal?: string;
  /** How long an OFFER holds its address for the client (RFC 2131 §4.3.1 "reserve"). */
  offerHoldMs?: number;
  /** How long a DECLINEd address stays out of use (RFC 2131 §4.3.3). */
  declineHoldMs?: number;
  /** Addresses that must never be handed out (reservations, the server, the router). */
  isExcluded?: (address: string) => boolean;
}

export type AllocateResult = { ok: true; lease: Lease } | { ok: false; reason: string };

export class Pool {
  private readonly first: number;
  private readonly last: number;
  private readonly byMac = new Map<string, Lease>();
  private readonly byAddr = new Map<number, Lease>();
  private readonly declined = new Map<number, number>();
  private readonly offerHoldMs: number;
  private readonly declineHoldMs: number;
  private readonly isExcluded: (address: string) => boolean;
  private readonly journalPath: string | undefined;
  private fd: number | undefined;
  private lines = 0;
  private cursor: number;

  constructor(opts: PoolOptions) {
    this.first = ipToInt(opts.first);
    this.last = ipToInt(opts.last);
    if (Number.isNaN(this.first) || Number.isNaN(this.last) || this.first > this.last)
      throw new Error(`pool range ${opts.first}-${opts.last} is not a valid IPv4 range`);
    this.offerHoldMs = opts.offerHoldMs ?? 60_000;
    this.declineHoldMs = opts.declineHoldMs ?? 600_000;
    this.isExcluded = opts.isExcluded ?? (() => false);
    this.journalPath = opts.journal;
    this.cursor = this.first;
    if (this.journalPath) this.load(this.journalPath);
  }

  get size(): number {
    return this.last - this.first + 1;
  }

  contains(address: string): boolean {
    const n = ipToInt(address);
    return n >= this.first && n <= this.last;
  }

  leaseOf(mac: string): Readonly<Lease> | undefined {
    return this.byMac.get(mac);
  }

  holderOf(address: string, now: number): string | undefined {
    const l = this.byAddr.get(ipToInt(address));
    return l && this.live(l, now) ? l.mac : undefined;
  }

  leases(): readonly Readonly<Lease>[] {
    return [...this.byMac.values()];
  }

  private live(l: Lease, now: number): boolean {
    return l.state !== 'released' && l.expires > now;
  }

  private free(n: number, mac: string, now: number): boolean {
    if (n < this.first || n > this.last) return false;
    const until = this.declined.get(n);
    if (until !== undefined && until > now) return false;
    if (this.isExcluded(intToIp(n))) return false;
    const l = this.byAddr.get(n);
    return !l || l.mac === mac || !this.live(l, now);
  }

  /**
   * An address for an OFFER: the MAC's current or last address when still free (stable across
   * boot stages), else the requested one (option 50) when free, else the next free address.
   * The address is held for the offer time so no other MAC is offered it meanwhile.
   */
  offer(mac: string, requested: string | undefined, now: number): AllocateResult {
    const mine = this.byMac.get(mac);
    let pick: number | undefined;
    if (mine && this.free(ipToInt(mine.address), mac, now)) pick = ipToInt(mine.address);
    else if (requested !== undefined && this.free(ipToInt(requested), mac, now))
      pick = ipToInt(requested);
    else pick = this.nextFree(mac, now);
    if (pick === undefined) return { ok: false, reason: 'discovery pool exhausted' };
    const bound = mine?.state === 'bound' && this.live(mine, now) && ipToInt(mine.address) === pick;
    if (bound) return { ok: true, lease: mine };
    return { ok: true, lease: this.set(mac, pick, 'offered', now + this.offerHoldMs) };
  }

  /** Commits `address` to `mac` for `leaseMs` (REQUEST); refuses an address another MAC holds. */
  bind(mac: string, address: string, leaseMs: number, now: number): AllocateResult {
    const n = ipToInt(address);
    if (!this.free(n, mac, now))
      return { ok: false, reason: `address ${address} is not available to ${mac}` };
    return { ok: true, lease: this.set(mac, n, 'bound', now + leaseMs) };
  }

  /** RFC 2131 §4.3.4: RELEASE frees the address; the MAC keeps its affinity for later. */
  release(mac: string, address: string, now: number): boolean {
    const l = this.byMac.get(mac);
    if (!l || l.address !== address || l.state === 'released') return false;
    this.set(mac, ipToInt(address), 'released', now);
    return true;
  }

  /** RFC 2131 §4.3.3: DECLINE means another host uses the address; keep it out of the pool. */
  decline(mac: string, address: string, now: number): boolean {
    const n = ipToInt(address);
    if (!this.contains(address)) return false;
    const l = this.byMac.get(mac);
    if (l && l.address === address) {
      this.byMac.delete(mac);
      this.byAddr.delete(n);
    }
    const until = now + this.declineHoldMs;
    this.declined.set(n, until);
    // The MAC goes with it, so replaying the journal drops the decliner's lease as this did.
    this.append({ op: 'decline', address, expires: until, mac });
    return true;
  }

  /** Drops an offer the client did not take (it chose another server). */
  cancelOffer(mac: string, now: number): void {
    const l = this.byMac.get(mac);
    if (l?.state === 'offered') this.set(mac, ipToInt(l.address), 'released', now);
  }

  private nextFree(mac: string, now: number): number | undefined {
    // Prefer addresses never handed out, then the longest-expired ones, so a MAC coming back
    // soon after its lease ran out still finds its old address.
    const size = this.size;
    let oldest: number | undefined;
    let oldestExp = Infinity;
    for (let i = 0; i < size; i++) {
      const n = this.first + ((this.cursor - this.first + i) % size);
      if (!this.free(n, mac, now)) continue;
      const l = this.byAddr.get(n);
      if (!l) {
        this.cursor = n + 1 > this.last ? this.first : n + 1;
        return n;
      }
      if (l.expires < oldestExp) {
        oldestExp = l.expires;
        oldest = n;
      }
    }
    return oldest;
  }

  private set(mac: string, n: number, state: LeaseState, expires: number): Lease {
    const prev = this.byMac.get(mac);
    if (prev && ipToInt(prev.address) !== n) {
      const held = this.byAddr.get(ipToInt(prev.address));
      if (held?.mac === mac) this.byAddr.delete(ipToInt(prev.address));
    }
    const other = this.byAddr.get(n);
    if (other && other.mac !== mac) this.byMac.delete(other.mac);
    const lease: Lease = { mac, address: intToIp(n), state, expires };
    this.byMac.set(mac, lease);
    this.byAddr.set(n, lease);
    this.append({ op: 'lease', mac, address: lease.address, state, expires });
    return lease;
  }

  // ---- journal ------------------------------------------------------------------------------

  private load(path: string): void {
    if (existsSync(path)) {
      const text = readFileSync(path, 'utf8');
      for (const line of text.split('\n')) {
        if (line.trim() === '') continue;
        let e: Entry;
        try {
          e = JSON.parse(line) as Entry;
        } catch {
          continue; // a torn last line after a crash
        }
        const n = ipToInt(e.address);
        if (Number.isNaN(n)) continue;
        if (e.op === 'decline') {
          this.declined.set(n, e.expires);
          const held = e.mac === undefined ? undefined : this.byMac.get(e.mac);
          if (e.mac !== undefined && held?.address === e.address) {
            this.byMac.delete(e.mac);
            this.byAddr.delete(n);
          }
        } else if (e.op === 'lease' && e.mac && e.state) {
          const prev = this.byMac.get(e.mac);
          if (prev) this.byAddr.delete(ipToInt(prev.address));
          const other = this.byAddr.get(n);
          if (other && other.mac !== e.mac) this.byMac.delete(other.mac);
          const l: Lease = { mac: e.mac, address: e.address, state: e.state, expires: e.expires };
          this.byMac.set(e.mac, l);
          this.byAddr.set(n, l);
        }
      }
    }
    this.compact();
  }

  private append(e: Entry): void {
    if (this.fd === undefined) return;
    writeSync(this.fd, `${JSON.stringify(e)}\n`);
    this.lines++;
    if (this.lines > 1000 && this.lines > 4 * (this.byMac.size + this.declined.size))
      this.compact();
  }

  /** Rewrites the journal from memory (Kea's LFC does the same for memfile). */
  compact(): void {
    if (!this.journalPath) return;
    const tmp = `${this.journalPath}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    let n = 0;
    const body: string[] = [];
    for (const l of this.byMac.values()) {
      body.push(JSON.stringify({ op: 'lease', ...l } satisfies Entry));
      n++;
    }
    for (const [a, until] of this.declined) {
      body.push(JSON.stringify({ op: 'decline', address: intToIp(a), expires: until }));
      n++;
    }
    writeSync(fd, body.length > 0 ? `${body.join('\n')}\n` : '');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.journalPath);
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = openSync(this.journalPath, 'a', 0o600);
    this.lines = n;
  }

  close(): void {
    if (this.fd !== undefined) {
      fsyncSync(this.fd);
      closeSync(this.fd);
    }
    this.fd = undefined;
  }
}
