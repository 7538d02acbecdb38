/** The status condition shape every Crowbar CRD uses, derived from the generated CRD types. */
import type { Node } from '../../generated/crowbar.ts';

export type Condition = NonNullable<NonNullable<Node['status']>['conditions']>[number];
