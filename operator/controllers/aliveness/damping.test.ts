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
});
