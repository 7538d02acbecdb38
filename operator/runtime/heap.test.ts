import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NODE_FLAGS } from './heap.ts';

const ROOT = join(import.meta.dirname, '..', '..');

describe('the operator heap settings', () => {
  it('the image starts the operator with the same node flags as the tests and the lab', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const entry = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
    expect(entry).toBeDefined();
    expect(JSON.parse(entry ?? '[]')).toEqual(['node', ...NODE_FLAGS, 'operator/main.ts']);
  });
});
