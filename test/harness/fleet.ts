/** Builders for annealer tests: roles, simulated nodes, bindings and state queries. */
import type { NodeRole, RoleSpec } from '../../generated/crowbar.ts';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { eventually } from './context.ts';

const FM = 'crowbar-test';

export class Fleet {
  readonly client: CrowbarClient;
  readonly id: string;

  constructor(client: CrowbarClient, id: string) {
    this.client = client;
    this.id = id;
  }

  role(short: string): string {
    return `${short}-${this.id}`;
  }

  node(short: string): string {
    return `${short}-${this.id}.lab.example.com`;
  }

  async createRole(
    short: string,
    spec: Partial<RoleSpec> & { requires?: string[] },
  ): Promise<void> {
    await this.client.create(
      'Role',
      {
        metadata: { name: this.role(short) },
        spec: { jig: 'test', ...spec, requires: (spec.requires ?? []).map((r) => this.role(r)) },
      },
      FM,
    );
  }

  /** A node whose aliveness the test controls (status.alive), available by default. */
  async createNode(
    short: string,
    opts: { alive?: boolean; available?: boolean; admin?: boolean } = {},
  ): Promise<string> {
    const name = this.node(short);
    await this.client.create(
      'Node',
      {
        metadata: { name },
        spec: {
          available: opts.available ?? true,
          admin: opts.admin ?? false,
          deployment: 'system',
        },
      },
      FM,
    );
    await this.setAlive(short, opts.alive ?? true);
    return name;
  }

  async setAlive(short: string, alive: boolean): Promise<void> {
    await this.client.mergePatchStatus('Node', this.node(short), { status: { alive } }, FM);
  }

  async setAvailable(short: string, available: boolean): Promise<void> {
    await this.client.mergePatch('Node', this.node(short), { spec: { available } }, FM);
  }

  async createDeployment(
    short: string,
    state: 'proposed' | 'committed' = 'proposed',
  ): Promise<string> {
    const name = `${short}-${this.id}`;
    await this.client.create(
      'Deployment',
      { metadata: { name }, spec: { parent: 'system', state } },
      FM,
    );
    return name;
  }

  async commit(deployment: string): Promise<void> {
    await this.client.mergePatch('Deployment', deployment, { spec: { state: 'committed' } }, FM);
  }

  /** Binds a role to a node the way a person does: create the NodeRole, the operator does the rest. */
  async bind(
    roleShort: string,
    nodeShort: string,
    deployment: string,
    data?: Record<string, unknown>,
  ): Promise<string> {
    const name = `${this.role(roleShort)}.${this.node(nodeShort)}`;
    await this.client.create(
      'NodeRole',
      {
        metadata: { name },
        spec: {
          role: this.role(roleShort),
          node: this.node(nodeShort),
          deployment,
          ...(data ? { data } : {}),
        },
      },
      FM,
    );
    return name;
  }

  nr(roleShort: string, nodeShort: string): string {
    return `${this.role(roleShort)}.${this.node(nodeShort)}`;
  }

  /** This test's noderoles (by the id in their names). */
  async noderoles(): Promise<NodeRole[]> {
    return (await this.client.list('NodeRole')).filter((nr) => nr.metadata.name?.includes(this.id));
  }

  async states(): Promise<Map<string, string>> {
    return new Map(
      (await this.noderoles()).map((nr) => [nr.metadata.name ?? '', nr.status?.state ?? 'unbound']),
    );
  }

  async waitAll(state: string, count: number, timeoutMs = 60_000): Promise<NodeRole[]> {
    return eventually(
      `${count} noderoles of ${this.id} ${state}`,
      async () => {
        const all = await this.noderoles();
        return all.length === count && all.every((nr) => nr.status?.state === state)
          ? all
          : undefined;
      },
      timeoutMs,
      150,
    );
  }

  async waitState(name: string, state: string, timeoutMs = 30_000): Promise<NodeRole> {
    return eventually(
      `${name} ${state}`,
      async () => {
        const nr = await this.client.get('NodeRole', name);
        return nr?.status?.state === state ? nr : undefined;
      },
      timeoutMs,
      100,
    );
  }
}
