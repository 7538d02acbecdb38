import { defineConfig } from 'vitest/config';

/**
 * `make e2e-install` only (not `make test`): a full installation with Debian's real installer
 * under TCG, tens of minutes (test/e2e/install.test.ts). Same control plane as the integration
 * tests.
 */
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    testTimeout: 9_000_000,
    hookTimeout: 600_000,
    fileParallelism: false,
  },
});
