/**
 * Progress of the compactor through a sealed partition (version 11; see
 * src/storage/compactor.ts and docs/storage.md).
 *
 * The compactor reads a partition's rows without deleting them, writes
 * their compressed windows batch by batch (each batch its own
 * transaction), and drops the whole partition at the end. One row per
 * partition in progress says where it stands, so that a pass interrupted
 * (kill -9, a lost connection) goes on from the next series instead of
 * encoding again what is already compressed:
 *
 * - `after_series`: every series up to this id is compressed (committed in
 *   the same transaction as its windows);
 * - `first_xid`: the oldest transaction id still running when the
 *   partition was started (`pg_snapshot_xmin` of the snapshot then, as a
 *   full 64-bit id). Every row inserted by an older transaction was
 *   committed before the first batch and so is read by the batches; a row
 *   whose inserting transaction is this one or younger may have arrived
 *   after its series' batch (a late write) and is merged in the final step,
 *   under a lock that stops writers, before the partition is dropped.
 *
 * @module
 */
import type { Migration } from "./schema.ts";

const SQL = `
CREATE TABLE _prom_catalog.compress_progress (
  table_name   text PRIMARY KEY,
  first_xid    bigint NOT NULL,
  after_series bigint NOT NULL
);
`;

/** Version 11: the compactor's progress through a partition. */
export const COMPRESS_PROGRESS_MIGRATION: Migration = {
  version: 11,
  description: "compactor progress per partition",
  sql: SQL,
};
