/**
 * Leader election on a coordination.k8s.io Lease, as client-go does it: every write carries the
 * resourceVersion it read, expiry is judged by when *we* last saw the record change (not by the
 * holder's clock), and a leader that cannot renew within the deadline steps down.
 *
 * A partition must not leave two leaders: every lease call has a timeout (a black-holed connection
 * would otherwise hang the renew loop forever, and with it the step-down), the renew deadline is
 * kept by a timer of its own rather than by the renew loop, and a renewal counts from the moment
 * its request was sent, not from when the answer came (a delayed answer must not extend the lease
 * beyond what the other replicas see).
 */
import {
  CoordinationV1Api,
  type ConfigurationOptions,
  type KubeConfig,
  type V1Lease,
  V1MicroTime,
} from '@kubernetes/client-node';
import { isConflict, isNotFound } from '../kube/errors.ts';
import { deadline } from '../kube/timeout.ts';
import type { Logger } from '../log.ts';

export interface LeaderOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export interface LeaderCallbacks {
  onStartedLeading(): void;
  onStoppedLeading(): void;
}

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private leading = false;
  private stopped = false;
  private observedRecord = '';
  private observedAt = 0;
  private lastRenew = 0;
  private timer: NodeJS.Timeout | undefined;
  private deadline: NodeJS.Timeout | undefined;
  /** The Lease as our last write left it: a leader renews from it without reading first. */
  private mine: V1Lease | undefined;
  private readonly opts: LeaderOptions;
  private readonly cb: LeaderCallbacks;
  private readonly log: Logger;

  constructor(kc: KubeConfig, opts: LeaderOptions, cb: LeaderCallbacks, log: Logger) {
    this.api = kc.makeApiClient(CoordinationV1Api);
    this.opts = opts;
    this.cb = cb;
    this.log = log.child({ component: 'leader', lease: `${opts.namespace}/${opts.name}` });
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /**
   * Whether this replica may act as the leader now: it leads and its last renewal (counted from
   * when it was sent) is within the renew deadline, which is shorter than the lease, so no other
   * replica can have taken over. Checked before a run or an SSH session starts.
   */
  holdsLease(now = Date.now()): boolean {
    return this.leading && now - this.lastRenew < this.opts.renewDeadlineMs;
  }

  /**
   * Per-call options: a timeout, so a black-holed API server cannot hang the renew loop. A leader
   * gives a call what is left until its renew deadline (a slow answer that comes in time still
   * renews; under load a fixed share of the deadline was too little), a candidate the deadline.
   */
  private call(): ConfigurationOptions {
    const left = this.lastRenew + this.opts.renewDeadlineMs - Date.now();
    return deadline(
      this.leading ? Math.max(this.opts.retryPeriodMs, left) : this.opts.renewDeadlineMs,
    );
  }

  /** Renewed (at `sentAt`): leading, and the deadline timer moves on. */
  private renewed(sentAt: number): void {
    this.lastRenew = Math.max(this.lastRenew, sentAt);
    this.setLeading(true);
    if (this.deadline) clearTimeout(this.deadline);
    const left = this.lastRenew + this.opts.renewDeadlineMs - Date.now();
    this.deadline = setTimeout(
      () => {
        if (this.stopped || !this.leading || this.holdsLease()) return;
        this.log.error('could not renew the lease within the deadline; stepping down');
        this.setLeading(false);
      },
      Math.max(0, left),
    );
    this.deadline.unref();
  }

  start(): void {
    const tick = async (): Promise<void> => {
      if (this.stopped) return;
      const began = Date.now();
      // stop() clears the timer; a tick already running sees `stopped` on its next turn.
      try {
        await this.tryAcquireOrRenew();
      } catch (err) {
        this.log.warn({ err }, 'lease update failed');
      }
      if (this.leading && Date.now() - this.lastRenew > this.opts.renewDeadlineMs) {
        this.log.error('could not renew the lease within the deadline; stepping down');
        this.setLeading(false);
      }
      // Every retry period from the start of the last try, not from its end: a slow API server
      // must not stretch the time between renewals past the deadline.
      const wait = Math.max(0, this.opts.retryPeriodMs - (Date.now() - began));
      this.timer = setTimeout(() => void tick(), wait);
    };
    void tick();
  }

  /** Stops campaigning; a leader gives the lease up so a successor need not wait for expiry. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.deadline) clearTimeout(this.deadline);
    if (!this.leading) return;
    try {
      const lease = await this.api.readNamespacedLease(
        { name: this.opts.name, namespace: this.opts.namespace },
        this.call(),
      );
      if (lease.spec?.holderIdentity === this.opts.identity) {
        lease.spec.holderIdentity = '';
        lease.spec.leaseDurationSeconds = 1;
        await this.api.replaceNamespacedLease(
          { name: this.opts.name, namespace: this.opts.namespace, body: lease },
          this.call(),
        );
      }
    } catch (err) {
      this.log.warn({ err }, 'could not release the lease');
    }
    // A deliberate release, not a loss: no onStoppedLeading.
    this.leading = false;
  }

  private setLeading(v: boolean): void {
    if (v === this.leading) return;
    this.leading = v;
    this.log.info({ identity: this.opts.identity }, v ? 'became leader' : 'stopped leading');
    if (v) this.cb.onStartedLeading();
    else this.cb.onStoppedLeading();
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const { namespace, name, identity } = this.opts;
    const sentAt = Date.now();
    const now = new Date(sentAt);
    const durationS = Math.max(1, Math.round(this.opts.leaseDurationMs / 1000));
    // client-go's fast path: the leader updates the record it wrote last, optimistically (its
    // resourceVersion makes a stale one fail with 409); one call per renewal instead of two.
    const mine = this.mine;
    this.mine = undefined;
    if (this.leading && mine?.spec) {
      // Our own copy (the answer to our last write), not a cached object: changed in place.
      mine.spec.renewTime = new V1MicroTime(sentAt);
      try {
        this.mine = await this.api.replaceNamespacedLease(
          { name, namespace, body: mine },
          this.call(),
        );
        this.renewed(sentAt);
        return;
      } catch (e) {
        if (!isConflict(e)) {
          this.mine = mine; // not refused, only not answered: the next try starts from it again
          throw e;
        }
        // Someone else wrote the Lease: read it and decide as a candidate would.
      }
    }
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace }, this.call());
    } catch (e) {
      if (!isNotFound(e)) throw e;
      try {
        this.mine = await this.api.createNamespacedLease(
          {
            namespace,
            body: {
              metadata: { name, namespace },
              spec: {
                holderIdentity: identity,
                leaseDurationSeconds: durationS,
                acquireTime: new V1MicroTime(now.getTime()),
                renewTime: new V1MicroTime(now.getTime()),
                leaseTransitions: 0,
              },
            },
          },
          this.call(),
        );
        this.renewed(sentAt);
      } catch (ce) {
        if (!isConflict(ce)) throw ce;
      }
      return;
    }
    const spec = lease.spec ?? {};
    const record = `${spec.holderIdentity ?? ''}|${String(spec.renewTime ?? '')}|${spec.leaseTransitions ?? 0}`;
    if (record !== this.observedRecord) {
      this.observedRecord = record;
      this.observedAt = Date.now();
    }
    const holder = spec.holderIdentity ?? '';
    const durationMs = (spec.leaseDurationSeconds ?? durationS) * 1000;
    const expired = holder === '' || this.observedAt + durationMs < Date.now();
    if (holder !== identity && !expired) {
      this.setLeading(false);
      return;
    }
    const takeover = holder !== identity;
    const nowMicro = new V1MicroTime(now.getTime());
    lease.spec = {
      holderIdentity: identity,
      leaseDurationSeconds: durationS,
      renewTime: nowMicro,
      acquireTime: takeover ? nowMicro : (spec.acquireTime ?? nowMicro),
      leaseTransitions: (spec.leaseTransitions ?? 0) + (takeover ? 1 : 0),
    };
    try {
      this.mine = await this.api.replaceNamespacedLease(
        { name, namespace, body: lease },
        this.call(),
      );
      this.renewed(sentAt);
    } catch (e) {
      if (!isConflict(e)) throw e;
      // Someone else wrote first; we learn who on the next tick.
    }
  }
}
