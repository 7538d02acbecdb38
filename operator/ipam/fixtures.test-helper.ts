/** Networks shaped like Crowbar's the_admin and the_bmc (CROWBAR-MODEL §7.1), and a small one. */
import type { NetworkView } from './network.ts';

/** Auto prefix of the admin network as the operator would have resolved it. */
export const ADMIN_V6 = 'fd12:3456:789a:1::/64';

export const admin: NetworkView = {
  name: 'admin',
  spec: {
    category: 'admin',
    group: 'internal',
    conduit: '1g0',
    subnet: '192.168.124.0/24',
    v6prefix: 'auto',
    ranges: [
      { name: 'admin', first: '192.168.124.10', last: '192.168.124.11' },
      { name: 'dhcp', first: '192.168.124.21', last: '192.168.124.80' },
      { name: 'host', first: '192.168.124.81', last: '192.168.124.254' },
    ],
    router: { address: '192.168.124.10', pref: 10 },
  },
  v6prefix: ADMIN_V6,
};

export const bmc: NetworkView = {
  name: 'bmc',
  spec: {
    category: 'bmc',
    group: 'internal',
    conduit: 'bmc',
    subnet: '192.168.128.0/24',
    ranges: [
      { name: 'admin', first: '192.168.128.10', last: '192.168.128.20' },
      { name: 'host', first: '192.168.128.21', last: '192.168.128.254' },
    ],
    router: { address: '192.168.128.10', pref: 99 },
  },
};

export const storage: NetworkView = {
  name: 'storage',
  spec: {
    category: 'general',
    subnet: '10.10.0.0/24',
    ranges: [{ name: 'host', first: '10.10.0.10', last: '10.10.0.12' }],
  },
};

export const outside: NetworkView = {
  name: 'outside',
  spec: { category: 'unmanaged', subnet: '172.16.0.0/16' },
};
