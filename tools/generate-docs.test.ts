import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { apiReference, exploreTransitions, stateDot } from './generate-docs.ts';

const ROOT = join(import.meta.dirname, '..');

describe('the noderole state diagram, found by running the transitions', () => {
  const ts = exploreTransitions();
  const has = (from: string, to: string, event: string) =>
    ts.some((t) => t.from === from && t.to === to && t.event === event);

  it('holds the life of a noderole that runs, fails, is retried and succeeds', () => {
    expect(has('proposed', 'todo', 'commit')).toBe(true);
    expect(has('proposed', 'blocked', 'commit')).toBe(true);
    expect(has('blocked', 'todo', 'parents active')).toBe(true);
    expect(has('todo', 'transition', 'run starts')).toBe(true);
    expect(has('transition', 'active', 'run succeeds')).toBe(true);
    expect(has('transition', 'error', 'run fails')).toBe(true);
    expect(has('error', 'todo', 'retry')).toBe(true);
    expect(has('active', 'todo', 'run input changed')).toBe(true);
    expect(has('todo', 'blocked', 'node died')).toBe(true);
  });

  it('holds only what the state machine allows (§2.2)', () => {
    // A retry only leaves error; a run only starts from todo or active; nothing loops on itself.
    expect(ts.filter((t) => t.event === 'retry').map((t) => t.from)).toEqual(['error']);
    expect(new Set(ts.filter((t) => t.event === 'run starts').map((t) => t.from))).toEqual(
      new Set(['todo', 'active']),
    );
    expect(ts.filter((t) => t.from === t.to)).toEqual([]);
    // Node alive again changes no state (§2.4).
    expect(ts.filter((t) => t.event === 'node alive')).toEqual([]);
  });

  it('draws each edge once with all its events', () => {
    const dot = stateDot(ts);
    expect(dot).toMatch(/^ {2}error -> todo \[label="parents active\\nretry"\];$/m);
    expect(dot.match(/ -> /g)?.length).toBe(new Set(ts.map((t) => `${t.from}>${t.to}`)).size + 1);
  });
});

describe('the API reference', () => {
  const crds = readdirSync(join(ROOT, 'crds'))
    .filter((f) => f.endsWith('.yaml'))
    .map(
      (f) =>
        load(readFileSync(join(ROOT, 'crds', f), 'utf8')) as Parameters<
          typeof apiReference
        >[0][number],
    );
  const md = apiReference(crds);

  it('has every kind and every top-level spec field, with constraints and CEL rules', () => {
    for (const c of crds) {
      expect(md).toContain(`## ${c.spec.names.kind}\n`);
      const spec = c.spec.versions[0]?.schema.openAPIV3Schema.properties?.['spec'];
      for (const f of Object.keys(spec?.properties ?? {}))
        expect(md).toContain(`| \`.spec.${f}\` |`);
    }
    expect(md).toMatch(/\| `\.spec\.state` \| string \|.*one of `"proposed"`, `"committed"`/);
    expect(md).toContain('the system deployment cannot be proposed: it is always committed');
  });
});
