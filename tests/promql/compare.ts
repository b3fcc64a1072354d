/**
 * Compares two answers of Prometheus's query API (ours and Prometheus's):
 * same status and errorType, same result type, same series (in order when
 * asked), same timestamps and values equal to 1e-9 relative ("NaN", "+Inf"
 * exactly).
 */
/** A response of the query API: its status and JSON body. */
export interface Answer {
  status: number;
  body: {
    status: string;
    errorType?: string;
    error?: string;
    data?: { resultType: string; result: unknown };
  };
}

function sameValue(a: string, b: string): boolean {
  if (a === b) return true;
  const x = Number(a);
  const y = Number(b);
  if (!Number.isFinite(x) || !Number.isFinite(y)) return false;
  return Math.abs(x - y) <= 1e-9 * Math.max(Math.abs(x), Math.abs(y));
}

type Point = [number, string];
interface Item {
  metric: Record<string, string>;
  value?: Point;
  values?: Point[];
}

function key(m: Record<string, string>): string {
  return JSON.stringify(Object.entries(m).sort());
}

/** Differences between two answers, as lines; empty when they agree. */
export function compareAnswers(ours: Answer, theirs: Answer, ordered: boolean): string[] {
  const diffs: string[] = [];
  if (theirs.body.status !== "success" || ours.body.status !== "success") {
    if (ours.body.status !== theirs.body.status || ours.body.errorType !== theirs.body.errorType) {
      diffs.push(
        `status: ours ${ours.status} ${ours.body.errorType ?? "ok"} (${ours.body.error ?? ""}), ` +
          `Prometheus ${theirs.status} ${theirs.body.errorType ?? "ok"} (${
            theirs.body.error ?? ""
          })`,
      );
    } else if (ours.status !== theirs.status) {
      diffs.push(`HTTP status: ours ${ours.status}, Prometheus ${theirs.status}`);
    }
    return diffs;
  }
  const a = ours.body.data!;
  const b = theirs.body.data!;
  if (a.resultType !== b.resultType) {
    return [`resultType: ours ${a.resultType}, Prometheus ${b.resultType}`];
  }
  if (a.resultType === "scalar" || a.resultType === "string") {
    const [ta, va] = a.result as Point;
    const [tb, vb] = b.result as Point;
    if (ta !== tb || !sameValue(va, vb)) diffs.push(`ours ${ta} ${va}, Prometheus ${tb} ${vb}`);
    return diffs;
  }
  const ia = a.result as Item[];
  const ib = b.result as Item[];
  if (!ordered) {
    ia.sort((x, y) => key(x.metric) < key(y.metric) ? -1 : 1);
    ib.sort((x, y) => key(x.metric) < key(y.metric) ? -1 : 1);
  }
  const ka = ia.map((x) => key(x.metric));
  const kb = ib.map((x) => key(x.metric));
  if (ka.join("|") !== kb.join("|")) {
    return [`series: ours ${ka.join(" ")}\n   Prometheus ${kb.join(" ")}`];
  }
  for (let i = 0; i < ia.length; i++) {
    const pa = ia[i].values ?? [ia[i].value!];
    const pb = ib[i].values ?? [ib[i].value!];
    if (pa.length !== pb.length) {
      diffs.push(`${ka[i]}: ours ${pa.length} points, Prometheus ${pb.length}`);
      continue;
    }
    for (let j = 0; j < pa.length; j++) {
      if (pa[j][0] !== pb[j][0] || !sameValue(pa[j][1], pb[j][1])) {
        diffs.push(`${ka[i]} point ${j}: ours ${pa[j]}, Prometheus ${pb[j]}`);
        break;
      }
    }
  }
  return diffs;
}
