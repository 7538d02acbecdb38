/** The noop jig: milestones and roles that only order others. Returns no data. */
import type { Jig } from './types.ts';

export const noopJig: Jig = {
  name: 'noop',
  run: () => Promise.resolve({ ok: true, wall: {} }),
};
