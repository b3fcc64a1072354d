/**
 * Differential test against the real thing: the same data is queried
 * through our PromQL API and through a real Prometheus 2.42 that reads it
 * from us by `remote_read` (it has no data of its own), so both evaluate
 * PromQL over identical samples. Every query of the corpus runs as instant
 * queries at several times (inside the data, just after a staleness
 * marker, past its end within and beyond the lookback) and as range
 * queries at two steps (one not dividing the data's interval); results
 * must have the same type, the same series and values equal bit for bit
 * (or, for the functions Go's and JavaScript's math libraries round
 * differently, to 1e-12 relative: compare.ts), and errors the same
 * errorType.
 */
import { assert } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { killAll } from "../helpers/procs.ts";
import { readerOptions, startPrometheus } from "../helpers/prometheus.ts";
import { inexact, runCorpus } from "./compare.ts";
import { CORPUS, corpusPlan, INSTANT_ONLY, INSTANT_TIMES, writeCorpusData } from "./corpus.ts";

Deno.test({
  name: "PromQL answers as Prometheus 2.42 does over the same data (corpus, instant and range)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const db = await freshDatabase("promql_diff");
    const conn = await inProcessConnector(db.uri);
    try {
      await writeCorpusData(conn.url);
      const prom = await startPrometheus(readerOptions(conn.url));
      const { compared, failures, nonEmpty, errors, inexactQueries } = await runCorpus(
        corpusPlan(conn.url, prom.url),
      );
      assert(
        failures.length === 0,
        `${failures.length} of ${compared} answers differ from Prometheus:\n${failures.join("\n")}`,
      );
      assert(compared >= (CORPUS.length + INSTANT_ONLY.length) * INSTANT_TIMES.length);
      // The corpus must exercise data, not agree on empty answers.
      assert(nonEmpty > compared * 0.7, `only ${nonEmpty} of ${compared} answers hold data`);
      assert(errors > 0 && errors < compared * 0.1, `${errors} errors of ${compared}`);
      console.log(
        `${compared} answers compared: ${nonEmpty} with data, ${errors} errors; ` +
          `${inexact.count} values equal only to 1e-12 (${inexact.examples.join(", ")}), ` +
          `in ${inexactQueries.size} queries:\n  ${[...inexactQueries].join("\n  ")}`,
      );
    } finally {
      await killAll();
      await conn.stop();
      await db.drop();
    }
  },
});
