/**
 * The aliveness controller (§10.1): a node is alive when one of its admin addresses answers ping
 * and a root SSH `echo` succeeds. It checks a node when a run on it starts or ends (the seed's
 * "aliveness tested every time a jig tries to do something"), every interval while the node has
 * pending work or is dead (so it comes back), every 20 intervals otherwise, and at once when its
 * addresses, its recorded host key or its crowbar.dev/check-alive annotation change.
 * It writes status.alive, status.aliveChecked and the `Alive` condition only when they change;
 * the annealer reacts to alive=false with §2.4's ripple. Nodes without addresses are left alone
 * (they report themselves through the node API), and system nodes are always alive.
 */
import { Counter } from 'prom-client';
import type { Node, NodeRole } from '../../../generated/crowbar.ts';
import { checkAlive, type AlivenessOptions } from '../../jigs/script/aliveness.ts';
import { recordHostKey, sshAddresses, type SshKeySource } from '../../jigs/script/wiring.ts';
import { apiMessage } from '../../kube/errors.ts';
import type { Logger } from '../../log.ts';
import type { Controller, Manager } from '../../manager.ts';
import {
  classify,
  nodeFingerprint,
  requeueAfter,
  schedule,
  type Memo,
  type Verdict,
} from './plan.ts';
import type { FlapDamper } from './damping.ts';
import { writeVerdict } from './status.ts';

export interface AlivenessControllerOptions {
  mgr: Manager;
  key: SshKeySource;
  fieldManager: string;
  log: Logger;
  /** Re-check period for nodes with pending work and for dead nodes. */
  intervalMs: number;
  /** Re-write aliveChecked at least this often even when nothing changed; default 10 min. */
  refreshMs?: number;
  port?: number;
  sshTimeoutMs?: number;
  ping?: AlivenessOptions['ping'];
  workers?: number;
  /** Flap damping, shared with the node API (damping.ts). */
  damper?: FlapDamper;
}

const PENDING = new Set(['todo', 'transition']);

export function alivenessController(o: AlivenessControllerOptions): Controller {
  const { mgr } = o;
  const log = o.log.child({ controller: 'aliveness' });
  const memos = new Map<string, Memo>();
  /** node → its noderoles, and each noderole's last seen state (for run start/end). */
  const byNode = new Map<string, Set<string>>();
  const lastState = new Map<string, string | undefined>();
  const checks = new Counter({
    name: 'crowbar_aliveness_checks_total',
    help: 'Aliveness checks by result (alive, dead, unknown).',
    labelNames: ['result'] as const,
    registers: [mgr.metrics.registry],
  });

  const memo = (node: string): Memo => {
    let m = memos.get(node);
    if (!m) {
      m = { lastCheck: 0, force: false, fingerprint: '', undecided: false };
      memos.set(node, m);
    }
    return m;
  };

  const onNodeRole = (nr: Readonly<NodeRole>): string[] => {
    const name = nr.metadata.name ?? '';
    const node = nr.spec.node;
    let set = byNode.get(node);
    if (!set) byNode.set(node, (set = new Set()));
    set.add(name);
    const state = nr.status?.state;
    const before = lastState.get(name);
    lastState.set(name, state);
    if (before !== state && (before === 'transition' || state === 'transition')) {
      memo(node).force = true; // a run starts or ends: check before and after it (§3.3)
      return [node];
    }
    return state !== undefined && PENDING.has(state) ? [node] : [];
  };

  const onNode = (n: Readonly<Node>): string[] => {
    const name = n.metadata.name ?? '';
    const m = memo(name);
    const fp = nodeFingerprint(n);
    if (m.fingerprint !== '' && m.fingerprint !== fp) {
      m.force = true;
      // A person's change (addresses, a cleared host key, the check-alive annotation) is not a
      // flap: the node's damping history starts afresh.
      o.damper?.forget(name);
    }
    m.fingerprint = fp;
    return [name];
  };

  const pending = (node: string): boolean => {
    const set = byNode.get(node);
    if (!set) return false;
    let any = false;
    for (const name of set) {
      const nr = mgr.caches.NodeRole.get(name);
      if (nr?.spec.node !== node) {
        set.delete(name);
        lastState.delete(name);
        continue;
      }
      if (PENDING.has(nr.status?.state ?? '')) any = true;
    }
    return any;
  };

  const write = async (node: Readonly<Node>, v: Verdict): Promise<void> => {
    const damping = o.damper?.record(node.metadata.name ?? '', node.status?.aliveDamping);
    if (await writeVerdict(mgr.client, node, v, o.fieldManager, o.refreshMs ?? 600_000, damping)) {
      log.info(
        { node: node.metadata.name, alive: v.alive, reason: v.reason, why: v.message },
        'aliveness changed',
      );
    }
  };

  const check = async (node: Readonly<Node>, addresses: string[]): Promise<Verdict> => {
    const name = node.metadata.name ?? '';
    let privateKey: Buffer;
    try {
      privateKey = await o.key.get();
    } catch (e) {
      return { alive: undefined, reason: 'SshKeyMissing', message: (e as Error).message };
    }
    const res = await checkAlive(
      { node: name, addresses, expectedHostKey: node.status?.sshHostKey },
      {
        privateKey,
        ...(o.port === undefined ? {} : { port: o.port }),
        ...(o.sshTimeoutMs === undefined ? {} : { sshTimeoutMs: o.sshTimeoutMs }),
        ...(o.ping === undefined ? {} : { ping: o.ping }),
      },
    );
    if (res.newHostKey !== undefined && !node.status?.sshHostKey) {
      log.info({ node: name, fingerprint: res.newHostKey }, 'recording a first-seen SSH host key');
      await recordHostKey(mgr.client, name, res.newHostKey, o.fieldManager).catch((e: unknown) => {
        log.warn({ node: name, err: apiMessage(e) }, 'could not record the SSH host key');
      });
    }
    return classify(res.alive, res.reason);
  };

  return {
    name: 'aliveness',
    workers: o.workers ?? 8,
    watches: { Node: onNode, NodeRole: onNodeRole },
    reconcile: async (name) => {
      const node = mgr.caches.Node.get(name);
      if (!node) {
        memos.delete(name);
        byNode.delete(name);
        o.damper?.forget(name);
        return undefined;
      }
      if (node.spec.system === true) {
        await write(node, {
          alive: true,
          reason: 'SystemNode',
          message: 'system nodes are always alive',
        });
        return undefined;
      }
      const addresses = sshAddresses(node, (n) => mgr.caches.Network.get(n));
      if (addresses.length === 0) return undefined; // aliveness reported by other means
      const m = memo(name);
      const isPending = pending(name);
      const s = schedule({
        now: Date.now(),
        memo: m,
        pending: isPending,
        alive: m.undecided ? undefined : node.status?.alive,
        intervalMs: o.intervalMs,
      });
      if (!s.check) return { requeueAfterMs: s.afterMs };
      m.force = false; // events during the check force the next one
      m.lastCheck = Date.now();
      const seen = await check(node, addresses);
      const now = Date.now();
      const fresh = mgr.caches.Node.get(name) ?? node;
      const v = o.damper
        ? o.damper.damp(name, seen, fresh.status?.alive, now, fresh.status?.aliveDamping)
        : seen;
      m.undecided = v.alive === undefined;
      checks.inc({ result: v.alive === undefined ? 'unknown' : v.alive ? 'alive' : 'dead' });
      log.debug({ node: name, alive: v.alive, reason: v.reason, why: v.message }, 'checked');
      // Write against the freshest cached copy (the check took a while).
      await write(mgr.caches.Node.get(name) ?? node, v);
      // A node held dead for flapping is checked again when it would be let back.
      const held = o.damper?.releaseInMs(name, now) ?? 0;
      const next = requeueAfter(isPending, v.alive, o.intervalMs);
      return { requeueAfterMs: held > 0 ? Math.min(next, held) : next };
    },
  };
}
