/**
 * Thin re-export of the third-party symbols the program uses. Versions are
 * pinned in deno.json; nothing else imports npm packages directly.
 */
export { default as postgres } from "postgres";
export type { Sql, TransactionSql } from "postgres";
export { default as snappy } from "snappyjs";
export { default as protobuf } from "protobufjs";
export { Command, Option } from "commander";
export { parse as parseYaml } from "yaml";
export { parser as promqlParser } from "@prometheus-io/lezer-promql";
export type { SyntaxNode } from "@lezer/common";
export type { PGlite } from "@electric-sql/pglite";
/**
 * PGlite (the embedded database) is loaded on demand: a connector with a
 * PostgreSQL server never loads its 15 MB of WebAssembly and data.
 */
export const loadPglite = (): Promise<typeof import("@electric-sql/pglite")> =>
  import("@electric-sql/pglite");
