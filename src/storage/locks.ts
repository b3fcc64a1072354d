/**
 * The registry of advisory locks the connector takes itself. PostgreSQL
 * keeps the one-bigint form (`pg_advisory_lock(bigint)`) and the two-int
 * form (`pg_advisory_lock(int, int)`) apart, so only the bigint keys below
 * can clash with a user's `--leader-election-pg-advisory-lock-id`; the
 * election refuses them all.
 */
import {
  HA_FENCE_LOCK_CLASS,
  HA_RECONCILE_LOCK_CLASS,
  MIGRATION_LOCK_KEY,
  PARTITION_LOCK_KEY,
} from "./migrations/schema.ts";
import { RETENTION_LOCK_KEY } from "./retention.ts";
import { COMPACTOR_LOCK_KEY } from "./compactor.ts";

/** Bigint-form keys in use, with what each guards. */
export const INTERNAL_LOCK_KEYS: ReadonlyMap<number, string> = new Map([
  [MIGRATION_LOCK_KEY, "schema migrations"],
  [PARTITION_LOCK_KEY, "partition creation"],
  [RETENTION_LOCK_KEY, "the retention job"],
  [COMPACTOR_LOCK_KEY, "the compactor"],
]);

/** Two-int-form classes in use (the second int varies), with what each guards. */
export const INTERNAL_LOCK_CLASSES: ReadonlyMap<number, string> = new Map([
  [HA_FENCE_LOCK_CLASS, "HA write fences, per cluster"],
  [HA_RECONCILE_LOCK_CLASS, "the HA reconciler"],
]);
