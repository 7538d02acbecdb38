import { describe, expect, it } from 'vitest';
import { DAMPING, FlapDamper } from './damping.ts';
import type { Verdict } from './plan.ts';

const up: Verdict = { alive: true, reason: 'Reachable', message: 'answers ping and SSH' };
const down: Verdict = { alive: false, reason: 'SshFailed', message: 'connection refused' };

describe('FlapDamper', () => {
  it('lets a reboot (dead, then alive) and an install\u2019s few changes through', () => {
    const d = new FlapDamper();
    let t = 0;
    for (const v of [up, down, up, down]) {
      expect(d.damp('n1', v, undefined, (t += 1000))).toBe(v);
    }
    expect(d.releaseInMs('n1', t)).toBe(0);
  });

  it('holds a node that flaps at every 15 s check dead from its fifth change, then lets it back', () => {
    const d = new FlapDamper();
    let t = 0;
    let alive: boolean | undefined = true;
    const seen: (boolean | undefined)[] = [];
    for (let i = 0; i < 8; i++) {
      const v = d.damp('n1', i % 2 === 0 ? down : up, alive, (t += 15_000));
      alive = v.alive;
      seen.push(v.alive);
      if (i >= 5 && i % 2 === 1) {
        expect(v.reason).toBe('Flapping');
        expect(v.message).toMatch(
          /^node n1 changed between alive and dead \d+ times in quick succession: held dead for about \d+ s more while it settles \(it was: answers ping and SSH\)$/,
        );
      }
    }
    // Changes 1-4 pass; from the fifth on, "alive" is held as dead.
    expect(seen).toEqual([false, true, false, true, false, false, false, false]);
    const wait = d.releaseInMs('n1', t);
    expect(wait).toBeGreaterThan(0);
    // It stays up from now on: still held just before the release time, let back after it.
    expect(d.damp('n1', up, false, t + wait - 2000).reason).toBe('Flapping');
    expect(d.damp('n1', up, false, t + wait + 1000)).toBe(up);
  });

  it('always passes a dead or unknown verdict', () => {
    const d = new FlapDamper({ ...DAMPING, suppress: 1 });
    d.damp('n1', up, false, 0);
    expect(d.damp('n1', down, true, 1)).toBe(down);
    const unknown: Verdict = { alive: undefined, reason: 'SshKeyMissing', message: 'no key' };
    expect(d.damp('n1', unknown, false, 2)).toBe(unknown);
  });

  it('remembers a bounded number of nodes', () => {
    const d = new FlapDamper({ ...DAMPING, maxNodes: 3 });
    for (let i = 0; i < 10; i++) d.damp(`n${i}`, up, false, i);
    expect(d.releaseInMs('n0', 10)).toBe(0);
  });

  it('hands its state to a new leader or a standby through the record it persists', () => {
    // The old leader: a node that flaps at every 15 s check is held.
    const old = new FlapDamper();
    const t0 = Date.parse('2026-12-01T10:00:00Z');
    let t = t0;
    let alive: boolean | undefined = true;
    let stored = undefined as ReturnType<FlapDamper['record']>;
    let writes = 0;
    for (let i = 0; i < 6; i++) {
      const v = old.damp('n1', i % 2 === 0 ? down : up, alive, (t += 15_000), stored);
      const r = old.record('n1', stored);
      if (r !== undefined) {
        stored = r;
        writes++;
      }
      alive = v.alive;
    }
    expect(alive).toBe(false);
    expect(stored?.suppressed).toBe(true);
    // Persisted only when the count or the hold changed: never more often than the flag did.
    expect(writes).toBeLessThanOrEqual(6);
    // The new leader has never seen the node: it starts from the record and keeps it held.
    const next = new FlapDamper();
    const v = next.damp('n1', up, false, t + 5000, stored);
    expect(v.reason).toBe('Flapping');
    expect(next.releaseInMs('n1', t + 5000)).toBeGreaterThan(0);
    // A damper that was never given the record lets it straight back (the old behaviour).
    expect(new FlapDamper().damp('n1', up, false, t + 5000)).toBe(up);
    // Nothing new to persist when the stored record says the same.
    expect(next.record('n1', stored)).toBeUndefined();
  });

  it('does not take back a record older than a forget (a person changed the node)', () => {
    const d = new FlapDamper();
    const rec = { penalty: 5000, at: '2026-12-01T10:00:00Z', flaps: 5, suppressed: true };
    d.forget('n1', Date.parse('2026-12-01T10:00:01Z'));
    expect(d.damp('n1', up, false, Date.parse('2026-12-01T10:00:02Z'), rec)).toBe(up);
    // A newer one (another replica damped after the forget) is taken.
    const newer = { ...rec, at: '2026-12-01T10:00:03Z' };
    expect(d.damp('n1', up, false, Date.parse('2026-12-01T10:00:04Z'), newer).reason).toBe(
      'Flapping',
    );
  });

  it('ignores a record with a bad time or penalty', () => {
    const d = new FlapDamper();
    const bad = { penalty: -1, at: '2026-12-01T10:00:00Z', flaps: 5, suppressed: true };
    expect(d.damp('n1', up, false, Date.parse('2026-12-01T10:00:02Z'), bad)).toBe(up);
    const when = { penalty: 5000, at: 'yesterday', flaps: 5, suppressed: true };
    expect(d.damp('n2', up, false, Date.parse('2026-12-01T10:00:02Z'), when)).toBe(up);
  });
});
