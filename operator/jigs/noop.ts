/**
 * The noop jig: milestones and roles that only order others. Returns no data, so its run is
 * instant: one status write, not a start and an end (ADR 0034).
 */
import type { Jig } from './types.ts';

export const noopJig: Jig = {
  name: 'noop',
  instant: true,
  run: () => Promise.resolve({ ok: true, wall: {} }),
};
