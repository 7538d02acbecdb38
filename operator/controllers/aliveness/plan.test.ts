import { describe, expect, it } from 'vitest';
import type { Node } from '../../../generated/crowbar.ts';
import { classify, nodeFingerprint, schedule, statusPatch, type Memo } from './plan.ts';

const memo = (m: Partial<Memo> = {}): Memo => ({
  lastCheck: 1000,
  force: false,
  fingerprint: 'x',
  undecided: false,
  ...m,
});

describe('schedule', () => {
  it.each([
    ['never checked', memo({ lastCheck: 0 }), false, true, 1500, { check: true }],
    ['forced', memo({ force: true }), false, true, 1001, { check: true }],
    ['pending, due', memo(), true, true, 2000, { check: true }],
    ['pending, not yet', memo(), true, true, 1400, { check: false, afterMs: 600 }],
    ['dead, due', memo(), false, false, 2100, { check: true }],
    ['undecided, due', memo(), false, undefined, 2000, { check: true }],
    ['alive and idle', memo(), false, true, 2000, { check: false, afterMs: 19_000 }],
    ['alive and idle, long ago', memo(), false, true, 21_000, { check: true }],
  ])('%s', (_, m, pending, alive, now, want) => {
    expect(schedule({ now, memo: m, pending, alive, intervalMs: 1000 })).toEqual(want);
  });
});

describe('classify', () => {
  it.each([
    ['10.0.0.1 answers ping and SSH', true, 'Reachable'],
    ['no admin address of node a answers ping (tried 10.0.0.1)', false, 'NoPing'],
    [
      '10.0.0.1 answers ping but SSH fails: host key of a changed (was x, now y): ...',
      false,
      'HostKeyChanged',
    ],
    [
      '10.0.0.1 answers ping but SSH fails: a refused authentication as root with the configured key',
      false,
      'AuthRefused',
    ],
    ['10.0.0.1 answers ping but SSH fails: cannot reach a: connection refused', false, 'SshFailed'],
    ['SSH echo on 10.0.0.1 failed: timed out after 10000 ms', false, 'SshFailed'],
  ])('%s', (reason, alive, want) => {
    expect(classify(alive, reason).reason).toBe(want);
  });
});

describe('statusPatch', () => {
  const node = (status: Node['status']): Node => ({
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Node',
    metadata: { name: 'a' },
    spec: {},
    ...(status ? { status } : {}),
  });
  const now = new Date('2026-01-01T00:00:00Z');
  const v = { alive: true, reason: 'Reachable', message: 'ok' };

  it('writes alive, aliveChecked and the condition the first time', () => {
    expect(statusPatch(node(undefined), v, now, 60_000)).toEqual({
      alive: true,
      aliveChecked: '2026-01-01T00:00:00Z',
      conditions: [
        {
          type: 'Alive',
          status: 'True',
          reason: 'Reachable',
          message: 'ok',
          lastTransitionTime: '2026-01-01T00:00:00Z',
        },
      ],
    });
  });

  it('writes nothing when nothing changed and the check time is fresh', () => {
    const first = statusPatch(node(undefined), v, now, 60_000) as Node['status'];
    const later = new Date(now.getTime() + 30_000);
    expect(statusPatch(node(first), v, later, 60_000)).toBeUndefined();
    // Stale aliveChecked: refreshed, keeping the transition time.
    const much = new Date(now.getTime() + 120_000);
    const p = statusPatch(node(first), v, much, 60_000);
    expect(p?.['conditions']).toEqual(first?.conditions);
  });

  it('leaves alive alone when undecided, keeps other conditions', () => {
    const other = {
      type: 'Other',
      status: 'True' as const,
      reason: 'X',
      message: 'y',
      lastTransitionTime: '2025-01-01T00:00:00Z',
    };
    const p = statusPatch(
      node({ alive: true, conditions: [other] }),
      { alive: undefined, reason: 'SshKeyMissing', message: 'no key' },
      now,
      60_000,
    );
    expect(p).not.toHaveProperty('alive');
    expect(p?.['conditions']).toEqual([
      other,
      expect.objectContaining({ type: 'Alive', status: 'Unknown', reason: 'SshKeyMissing' }),
    ]);
  });

  it('fingerprints addresses, host key and the check annotation', () => {
    const a = node({ addresses: [{ network: 'admin', address: '10.0.0.1/24' }] });
    const b = node({ addresses: [{ network: 'admin', address: '10.0.0.2/24' }] });
    expect(nodeFingerprint(a)).not.toBe(nodeFingerprint(b));
    expect(nodeFingerprint(a)).toBe(nodeFingerprint({ ...a, spec: { available: true } }));
  });
});
