/**
 * The test jig: simulated work for tests, benchmarks and the lab. Role `spec.test` sets a delay,
 * failure and the wall it returns; a noderole's committed data may override them under
 * `test` (e.g. {"test": {"fail": true}}) so one binding can fail while its peers succeed.
 */
import { sleep, type Jig, type JigRun } from './types.ts';

interface TestSettings {
  delayMs?: number;
  fail?: boolean;
  failMessage?: string;
  wall?: Record<string, unknown>;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function settings(run: JigRun): TestSettings {
  const fromRole: TestSettings = run.role.spec.test ?? {};
  const override = run.noderole.status?.committedData?.['test'];
  return isRecord(override) ? { ...fromRole, ...(override as TestSettings) } : fromRole;
}

export const testJig: Jig = {
  name: 'test',
  async run(run) {
    const s = settings(run);
    await sleep(Math.max(0, s.delayMs ?? 0), run.signal);
    if (s.fail) {
      const message = s.failMessage ?? `test jig failed as configured (run ${run.number})`;
      return { ok: false, message, logTail: message, exitCode: 1 };
    }
    return {
      ok: true,
      wall: { ...(s.wall ?? {}), test: { run: run.number } },
      logTail: `ran ${run.noderole.metadata.name ?? ''}`,
    };
  },
};
