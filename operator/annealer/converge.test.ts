import { describe, expect, it } from 'vitest';
import { finishRun, pendingRetries, step } from './converge.ts';
import { deployment, node, noderole, statesOf, world } from './fixtures.test-helper.ts';

const N1 = 'n1.lab.example.com';
const N2 = 'n2.lab.example.com';
const a = `a.${N1}`;
const b = `b.${N1}`;
const c = `c.${N2}`;

describe('step (one annealer pass)', () => {
  it('acts on a raised spec.retry, then starts the retried run', () => {
    const w = world({
      nodes: [node(N1)],
      noderoles: [
        noderole('a', N1, { state: 'error', retry: 1 }),
        noderole('b', N1, { state: 'blocked', parents: [a], cohort: 1 }),
      ],
    });
    expect(pendingRetries(w)).toEqual([a]);
    const pass = step(w, { maxConcurrent: 10, running: new Set() });
    expect(pass.start).toEqual([a]);
    expect(pass.changes.map((ch) => [ch.name, ch.state, ch.observedRetry])).toEqual([
      [a, 'todo', 1],
      [a, 'transition', undefined],
    ]);
    expect(pass.world.noderoles.get(a)).toMatchObject({ state: 'transition', observedRetry: 1 });
    expect(pendingRetries(pass.world)).toEqual([]);
  });

  it('records a refused retry once, with the refusal as the message', () => {
    const w = world({
      nodes: [node(N1)],
      noderoles: [noderole('a', N1, { state: 'active', retry: 2, observedRetry: 1 })],
    });
    const pass = step(w, { maxConcurrent: 10, running: new Set() });
    expect(pass.changes).toEqual([
      {
        name: a,
        state: 'active',
        message: expect.stringMatching(/only a noderole in error/) as unknown,
        observedRetry: 2,
      },
    ]);
    expect(step(pass.world, { maxConcurrent: 10, running: new Set() }).changes).toEqual([]);
  });

  it('starts runnable noderoles within the cap and moves them to transition', () => {
    const w = world({
      nodes: [node(N1), node(N2)],
      deployments: [deployment('system')],
      noderoles: [noderole('a', N1, { state: 'todo' }), noderole('c', N2, { state: 'todo' })],
    });
    const pass = step(w, { maxConcurrent: 2, running: new Set([`z.${N2}`]) });
    expect(pass.start).toEqual([a]);
    expect(statesOf(pass.world)).toEqual({ [a]: 'transition', [c]: 'todo' });
  });

  it('finishRun: success makes active and unblocks; failure makes error', () => {
    const w = world({
      nodes: [node(N1)],
      noderoles: [
        noderole('a', N1, { state: 'transition' }),
        noderole('b', N1, { state: 'blocked', parents: [a], cohort: 1 }),
      ],
    });
    const ok = finishRun(w, a, { ok: true });
    expect(ok.ok && ok.changes.map((ch) => [ch.name, ch.state])).toEqual([
      [a, 'active'],
      [b, 'todo'],
    ]);
    const failed = finishRun(w, a, { ok: false, message: 'script exited 2' });
    expect(failed.ok && failed.changes.map((ch) => [ch.name, ch.state, ch.message])).toEqual([
      [a, 'error', 'script exited 2'],
      [b, 'blocked', `blocked: ${a} is in error; fix it and retry it`],
    ]);
  });
});
