import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: [
            '{operator,webhooks,dhcp-sidecar,dns-sidecar,cli,lab,tools,test/harness,bench}/**/*.test.ts',
          ],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/harness/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          // One control plane per run; files share it and use unique object names.
          fileParallelism: false,
        },
      },
    ],
  },
});
