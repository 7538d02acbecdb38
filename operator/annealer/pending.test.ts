import { describe, expect, it } from 'vitest';
import { noderole } from './fixtures.test-helper.ts';
import { PendingChanges, PendingView } from './pending.ts';

const N = 'n1.lab.example.com';

describe('PendingChanges', () => {
  it('keeps the newest change per noderole and indexes it under the state it sets, and only there', () => {
    const p = new PendingChanges();
    p.set({ name: `a.${N}`, state: 'todo', message: 'm1' });
    p.set({ name: `b.${N}`, state: 'blocked', message: 'm2' });
    expect([...(p.byState().get('todo') ?? [])]).toEqual([`a.${N}`]);
    p.set({ name: `a.${N}`, state: 'transition', message: 'running' });
    expect(p.size).toBe(2);
    expect([...(p.byState().get('todo') ?? [])]).toEqual([]);
    expect([...(p.byState().get('transition') ?? [])]).toEqual([`a.${N}`]);
    expect([...p.byState().keys()].sort()).toEqual(['blocked', 'transition']);
  });

  it('drops a change only when it is still the pending one, if asked so', () => {
    const p = new PendingChanges();
    const first = { name: `a.${N}`, state: 'todo' as const, message: 'first' };
    p.set(first);
    const second = { name: `a.${N}`, state: 'blocked' as const, message: 'second' };
    p.set(second);
    // The write of the first decision ended: the newer one still waits for its own.
    p.delete(first.name, first);
    expect(p.get(first.name)).toBe(second);
    p.delete(second.name, second);
    expect(p.has(first.name)).toBe(false);
    expect(p.byState().size).toBe(0);
  });

  it('tells each name whose change was set or dropped, once the change is in place', () => {
    const told: string[] = [];
    const p = new PendingChanges((name) => {
      told.push(`${name}:${p.get(name)?.state ?? 'none'}`);
    });
    const first = { name: 'a', state: 'todo' as const, message: 'first' };
    p.set(first);
    p.set({ name: 'a', state: 'transition', message: 'running' });
    p.delete('a', first); // not the pending one: nothing changed
    p.delete('b'); // none pending
    p.delete('a');
    expect(told).toEqual(['a:todo', 'a:transition', 'a:none']);
  });
});

describe('PendingView', () => {
  it('reads each noderole with its pending change applied, copies nothing, and follows later changes', () => {
    const base = new Map([
      [`a.${N}`, noderole('a', N, { state: 'proposed', runCount: 2 })],
      [`b.${N}`, noderole('b', N, { state: 'active' })],
    ]);
    const p = new PendingChanges();
    const v = new PendingView(base, p);
    expect(v.get(`a.${N}`)?.state).toBe('proposed');
    p.set({ name: `a.${N}`, state: 'todo', message: 'committed', observedRetry: 1 });
    p.set({ name: `z.${N}`, state: 'todo', message: 'not bound' });
    expect(v.get(`a.${N}`)).toMatchObject({ state: 'todo', runCount: 2, observedRetry: 1 });
    expect(v.get(`z.${N}`)).toBeUndefined();
    expect(v.has(`z.${N}`)).toBe(false);
    expect(v.size).toBe(2);
    expect([...v.values()].map((nr) => nr.state)).toEqual(['todo', 'active']);
    expect(base.get(`a.${N}`)?.state).toBe('proposed');
  });
});
