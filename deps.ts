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
