/**
 * The whole PromQL differential corpus (tests/promql/corpus.ts) as a
 * benchmark: the same data in the connector and, by remote read, in a real
 * Prometheus 2.42; every query at every instant and range asked of one,
 * then of the other, each answer compared (bit for bit, as the test does),
 * and each side's total time reported with their ratio. Repeated rounds;
 * the best round per side counts (the machine is shared and noisy).
 *
 *   deno run -A bench/promql_corpus.ts [--rounds 3]
 *
 * Never part of `deno task test` (the test runs the same corpus untimed).
 *
 * @module
 */
import { freshDatabase } from "../tests/helpers/db.ts";
import { inProcessConnector } from "../tests/helpers/connector.ts";
import { killAll } from "../tests/helpers/procs.ts";
import { readerOptions, startPrometheus } from "../tests/helpers/prometheus.ts";
import { runCorpus } from "../tests/promql/compare.ts";
import { corpusPlan, writeCorpusData } from "../tests/promql/corpus.ts";

const at = Deno.args.indexOf("--rounds");
const ROUNDS = at >= 0 ? Number(Deno.args[at + 1]) : 3;

const db = await freshDatabase("bench_promql_corpus");
const conn = await inProcessConnector(db.uri);
try {
  await writeCorpusData(conn.url);
  const prom = await startPrometheus(readerOptions(conn.url));
  const plan = { ...corpusPlan(conn.url, prom.url), timed: true };
  let best = { ours: Infinity, prometheus: Infinity };
  let answers = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const r = await runCorpus(plan);
    if (r.failures.length) {
      throw new Error(`${r.failures.length} answers differ:\n${r.failures.slice(0, 5).join("\n")}`);
    }
    answers = r.compared;
    best = {
      ours: Math.min(best.ours, r.oursMs),
      prometheus: Math.min(best.prometheus, r.prometheusMs),
    };
  }
  console.log(
    `${new Date().toISOString()}, load average ${Deno.loadavg().join(" ")}; ` +
      `${plan.queries.length} queries, ${answers} answers per round, all equal; best of ${ROUNDS}:`,
  );
  console.log(
    "\n| connector (ms) | Prometheus + remote read (ms) | ratio (Prometheus ÷ connector) |",
  );
  console.log("| ---: | ---: | ---: |");
  console.log(
    `| ${best.ours.toFixed(0)} | ${best.prometheus.toFixed(0)} | ${
      (best.prometheus / best.ours).toFixed(2)
    }× |`,
  );
} finally {
  await killAll();
  await conn.stop();
  await db.drop();
}
