/**
 * IPAM for Crowbar networks (issue 5; CROWBAR-MODEL §7): pure address arithmetic, IPv6
 * derivation, validation and the allocation decision. No I/O: the operator reads the objects,
 * calls these functions and writes NetworkAllocation objects named by {@link allocationName}.
 */
export * from './address.ts';
export * from './allocate.ts';
export * from './name.ts';
export * from './network.ts';
export * from './ranges.ts';
export * from './taken.ts';
export * from './v6.ts';
export * from './validate.ts';
