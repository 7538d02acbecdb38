/**
 * The Crowbar operator: informers for Crowbar's kinds, controllers behind a workqueue, leader
 * election on a Lease, /healthz, /readyz, /metrics, JSON logs, and a clean stop on SIGTERM.
 */
import { CoreV1Api } from '@kubernetes/client-node';
import { loadConfig } from './config.ts';
import { Annealer } from './controllers/annealer/annealer.ts';
import { Binder } from './controllers/annealer/binder.ts';
import { Deletion } from './controllers/deletion/deletion.ts';
import { setupNodeAccess } from './controllers/aliveness/setup.ts';
import { deploymentStatusController } from './controllers/deployment/status.ts';
import { ensureSystemDeployment } from './controllers/deployment/system.ts';
import { ensureDefaultBootEnvs } from './default-bootenvs.ts';
import { networkControllers } from './controllers/network/index.ts';
import { nodeStatusController } from './controllers/node/status.ts';
import { roleStatusController } from './controllers/role/status.ts';
import { EventRecorder } from './events.ts';
import { jobExecutorFromConfig, type JobExecutor } from './executors/job.ts';
import { JigRegistry } from './jigs/registry.ts';
import { makeTestJig } from './jigs/test-jig.ts';
import { sshAddresses } from './jigs/script/wiring.ts';
import { loadKubeConfig } from './kube/client.ts';
import { rootLogger } from './log.ts';
import { Manager } from './manager.ts';
import { provisionerApi, provisionerFlow } from './provisioner/setup.ts';
import { PowerService, powerHook } from './power/controller.ts';
import { limitHeapGrowth } from './runtime/heap.ts';
import { onShutdown } from './runtime/shutdown.ts';

const FIELD_MANAGER = 'crowbar-operator';

async function main(): Promise<void> {
  const log = rootLogger('crowbar-operator');
  let config;
  try {
    config = loadConfig(process.argv.slice(2), process.env);
  } catch (err) {
    log.fatal({ err }, 'bad configuration');
    process.exit(2);
  }
  limitHeapGrowth(config.heapGrowthPercent);
  const kc = loadKubeConfig(config.kubeconfig);
  log.info(
    {
      server: kc.getCurrentCluster()?.server,
      identity: config.identity,
      executor: config.executor,
      maxConcurrentRuns: config.maxConcurrentRuns,
      heapGrowthPercent: config.heapGrowthPercent,
    },
    'starting',
  );
  const mgr = new Manager({ kc, config, log });
  mgr.add({
    name: 'system-deployment',
    workers: 1,
    watches: { Deployment: (d) => (d.metadata.name === 'system' ? ['system'] : []) },
    onStartedLeading: async () => {
      if (await ensureSystemDeployment(mgr.client, FIELD_MANAGER))
        log.info('created the system deployment');
      const bootEnvs = await ensureDefaultBootEnvs(mgr.client, FIELD_MANAGER);
      if (bootEnvs.length > 0) log.info({ bootEnvs }, 'created the default boot environments');
    },
    reconcile: async () => {
      await ensureSystemDeployment(mgr.client, FIELD_MANAGER, (n) => mgr.caches.Deployment.get(n));
      return undefined;
    },
  });
  const recorder = new EventRecorder(kc, mgr.metrics.registry, log, {
    namespace: config.leaseNamespace,
    component: 'crowbar-operator',
  });
  const jigs = new JigRegistry();
  if (config.testJigJournal !== undefined) jigs.register(makeTestJig(config.testJigJournal));
  const nodeAccess = await setupNodeAccess({
    kc,
    mgr,
    config,
    jigs,
    fieldManager: FIELD_MANAGER,
    log,
    routes: provisionerApi({ mgr, config, recorder, fieldManager: FIELD_MANAGER, log }),
  });
  mgr.add(
    provisionerFlow({
      mgr,
      config,
      recorder,
      jigs,
      fieldManager: FIELD_MANAGER,
      log,
      power: powerHook(
        new PowerService({
          core: kc.makeApiClient(CoreV1Api),
          recorder,
          log,
          registry: mgr.metrics.registry,
          namespace: config.leaseNamespace,
          sshKey: nodeAccess.key,
          // The script jig's choice of address: admin networks by category, then the others.
          sshAddress: (n) => sshAddresses(n, (net) => mgr.caches.Network.get(net))[0],
        }),
      ),
    }),
  );
  let jobExecutor: JobExecutor | undefined;
  try {
    if (config.executor === 'job')
      jobExecutor = jobExecutorFromConfig(kc, config, FIELD_MANAGER, log);
  } catch (err) {
    log.fatal({ err }, 'bad configuration');
    process.exit(2);
  }
  const network = networkControllers({ mgr, recorder, log });
  const annealer = new Annealer({
    mgr,
    addressing: network.addressing,
    jigs,
    ...(jobExecutor ? { executor: jobExecutor } : {}),
    recorder,
    log,
    identity: config.identity,
    maxConcurrentRuns: config.maxConcurrentRuns,
    fieldManager: FIELD_MANAGER,
  });
  mgr.add(annealer.controller());
  mgr.add(new Binder({ mgr, annealer, recorder, fieldManager: FIELD_MANAGER, log }).controller());
  mgr.add(new Deletion({ mgr, annealer, recorder, fieldManager: FIELD_MANAGER, log }).controller());
  mgr.add(deploymentStatusController(mgr, annealer.view, FIELD_MANAGER));
  mgr.add(nodeStatusController(mgr, annealer.view, FIELD_MANAGER));
  mgr.add(roleStatusController(mgr, FIELD_MANAGER));
  for (const c of network.controllers) mgr.add(c);

  onShutdown(log, 20_000, async () => {
    // Run Jobs outlive this process: the next leader re-attaches to them.
    jobExecutor?.detach();
    await annealer.stop();
    await nodeAccess.stop();
    await mgr.stop();
  });
  await mgr.start();
}

await main();
