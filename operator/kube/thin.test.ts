import { describe, expect, it } from 'vitest';
import type { NodeRole } from '../../generated/crowbar.ts';
import { thinNodeRole } from './thin.ts';

describe('thinNodeRole', () => {
  it('drops the run input and log tail, keeps what decisions read (digest, id, wall)', () => {
    const nr = {
      apiVersion: 'crowbar.dev/v1alpha1',
      kind: 'NodeRole',
      metadata: { name: 'r.n1' },
      spec: { node: 'n1', role: 'r', deployment: 'd' },
      status: {
        state: 'active',
        wall: { k: 1 },
        run: {
          id: 'r.n1.run-1',
          number: 1,
          started: '2026-12-01T00:00:00Z',
          input: { big: 'x'.repeat(10_000) },
          inputDigest: 'sha256:00',
          logTail: 'ran',
        },
      },
    } as unknown as NodeRole;
    thinNodeRole(nr);
    expect(nr.status?.run).toEqual({
      id: 'r.n1.run-1',
      number: 1,
      started: '2026-12-01T00:00:00Z',
      inputDigest: 'sha256:00',
    });
    expect(nr.status?.wall).toEqual({ k: 1 });
  });

  it('leaves a noderole without a run as it is', () => {
    const nr = {
      metadata: { name: 'a' },
      spec: {},
      status: { state: 'todo' },
    } as unknown as NodeRole;
    thinNodeRole(nr);
    expect(nr.status).toEqual({ state: 'todo' });
  });
});
