/**
 * The benchmark's load: node_exporter-like series and remote write bodies
 * built from them, all before any clock starts.
 *
 * Bodies are encoded by hand (each series' labels are encoded once and
 * copied into every request) and compressed with snappyjs, as Prometheus
 * sends them: one sample per TimeSeries, `batch` samples per request.
 *
 * @module
 */
import { snappy } from "../deps.ts";
import { putVarint, varintSize } from "../src/wire/varint.ts";

/** A label pair. */
export interface Label {
  name: string;
  value: string;
}

/** The shape of a load. */
export interface LoadShape {
  /** Distinct series (default 10,000). */
  series: number;
  /** Scrapes ("slots") after the warm-up one; every series has one sample per slot. */
  slots: number;
  /** Samples per request (default 2,000). */
  batch: number;
  /** Concurrent senders, each owning every `senders`-th series (Prometheus shards). */
  senders: number;
  /** Sample time of slot 0, ms. */
  startMs: number;
  /** Scrape interval, ms. */
  intervalMs: number;
}

/** One request of a plan. */
export interface PlannedRequest {
  body: Uint8Array;
  samples: number;
  /** "leader"/"follower" in an HA load, "single" otherwise. */
  role: "single" | "leader" | "follower";
}

/** What each sender sends: the warm-up slot first (untimed), then the timed requests. */
export interface Plan {
  shape: LoadShape;
  warmup: PlannedRequest[][];
  timed: PlannedRequest[][];
}

// Per node: 64 cpu series, 16 disk, 16 network, 4 filesystem = 100 series.
const MODES = ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"];
const DISK_METRICS = [
  "node_disk_io_time_seconds_total",
  "node_disk_read_bytes_total",
  "node_disk_read_time_seconds_total",
  "node_disk_reads_completed_total",
  "node_disk_write_time_seconds_total",
  "node_disk_writes_completed_total",
  "node_disk_written_bytes_total",
  "node_disk_io_now",
];
const NET_METRICS = [
  "node_network_receive_bytes_total",
  "node_network_receive_packets_total",
  "node_network_transmit_bytes_total",
  "node_network_transmit_packets_total",
];
const FS_MOUNTS = [["/dev/sda1", "/"], ["/dev/sda2", "/var"], ["/dev/sdb1", "/data"], [
  "tmpfs",
  "/run",
]];

/**
 * The i-th node_exporter-like series: 9 labels (with `__name__`), sorted
 * by name. `extra` adds labels (the HA `cluster` and `__replica__`).
 */
export function benchLabels(i: number, extra: Label[] = []): Label[] {
  const node = Math.floor(i / 100);
  const k = i % 100;
  let name: string;
  let a: Label;
  let b: Label;
  if (k < 64) {
    name = "node_cpu_seconds_total";
    a = { name: "cpu", value: String(k >> 3) };
    b = { name: "mode", value: MODES[k & 7] };
  } else if (k < 80) {
    name = DISK_METRICS[(k - 64) & 7];
    a = { name: "device", value: (k - 64) < 8 ? "nvme0n1" : "sda" };
    b = { name: "major", value: (k - 64) < 8 ? "259" : "8" };
  } else if (k < 96) {
    name = NET_METRICS[(k - 80) & 3];
    a = { name: "device", value: ["eth0", "eth1", "lo", "docker0"][(k - 80) >> 2] };
    b = { name: "duplex", value: "full" };
  } else {
    name = "node_filesystem_avail_bytes";
    const [dev, mnt] = FS_MOUNTS[k - 96];
    a = { name: "device", value: dev };
    b = { name: "mountpoint", value: mnt };
  }
  const labels: Label[] = [
    { name: "__name__", value: name },
    a,
    b,
    { name: "instance", value: `node-${String(node).padStart(4, "0")}.prod.example.com:9100` },
    { name: "job", value: "node-exporter" },
    { name: "namespace", value: "monitoring" },
    { name: "pod", value: `node-exporter-${(node * 2654435761 >>> 0).toString(36)}` },
    { name: "region", value: `eu-west-${(node % 3) + 1}` },
    { name: "team", value: node % 2 ? "platform" : "storage" },
    ...extra,
  ];
  return labels.sort((x, y) => x.name < y.name ? -1 : x.name > y.name ? 1 : 0);
}

/** The value of series `i` at slot `slot` (counters grow, gauges wander). */
export function benchValue(i: number, slot: number): number {
  return (i % 977) * 1000.25 + slot * ((i % 13) + 0.5) + (slot % 7) / 8;
}

const enc = new TextEncoder();

const varintLen = varintSize;

/** `TimeSeries.labels` fields (key, length, Label) of one series, encoded once. */
export function encodeLabels(labels: Label[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const l of labels) {
    const n = enc.encode(l.name);
    const v = enc.encode(l.value);
    const inner = 1 + varintLen(n.length) + n.length + 1 + varintLen(v.length) + v.length;
    const out = new Uint8Array(1 + varintLen(inner) + inner);
    let o = 0;
    out[o++] = 0x0a; // TimeSeries.labels
    o = putVarint(out, o, inner);
    out[o++] = 0x0a; // Label.name
    o = putVarint(out, o, n.length);
    out.set(n, o);
    o += n.length;
    out[o++] = 0x12; // Label.value
    o = putVarint(out, o, v.length);
    out.set(v, o);
    parts.push(out);
  }
  const total = parts.reduce((s, p) => s + p.length, 0);
  const all = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return all;
}

const f64 = new Float64Array(1);
const f64b = new Uint8Array(f64.buffer);

/**
 * A `prometheus.WriteRequest` (uncompressed) with one sample per
 * TimeSeries: `labels[k]` (from {@linkcode encodeLabels}) at `times[k]`.
 */
export function encodeRequest(labels: Uint8Array[], times: number[], values: number[]): Uint8Array {
  let size = 0;
  const bodyLens = new Array<number>(labels.length);
  for (let k = 0; k < labels.length; k++) {
    const sample = 1 + 8 + 1 + varintLen(times[k]);
    const body = labels[k].length + 1 + varintLen(sample) + sample;
    bodyLens[k] = body;
    size += 1 + varintLen(body) + body;
  }
  const out = new Uint8Array(size);
  let o = 0;
  for (let k = 0; k < labels.length; k++) {
    out[o++] = 0x0a; // WriteRequest.timeseries
    o = putVarint(out, o, bodyLens[k]);
    out.set(labels[k], o);
    o += labels[k].length;
    const sample = 1 + 8 + 1 + varintLen(times[k]);
    out[o++] = 0x12; // TimeSeries.samples
    o = putVarint(out, o, sample);
    out[o++] = 0x09; // Sample.value, double
    f64[0] = values[k];
    out.set(f64b, o);
    o += 8;
    out[o++] = 0x10; // Sample.timestamp, varint
    o = putVarint(out, o, times[k]);
  }
  return out;
}

/** A snappy-compressed body of {@linkcode encodeRequest}. */
export function compressedRequest(
  labels: Uint8Array[],
  times: number[],
  values: number[],
): Uint8Array {
  return snappy.compress(encodeRequest(labels, times, values));
}

/** The time of `slot`. */
export function slotTime(shape: LoadShape, slot: number): number {
  return shape.startMs + slot * shape.intervalMs;
}

/**
 * Which series sender `s` owns, in the order it sends them within a slot.
 */
export function ownedSeries(shape: LoadShape, s: number): number[] {
  const out: number[] = [];
  for (let i = s; i < shape.series; i += shape.senders) out.push(i);
  return out;
}

/**
 * Visits every sample of a sender in send order as batches: `onBatch`
 * gets the (series index, slot) pairs of one request. The warm-up slot 0
 * is flushed on its own, so timed requests hold slots 1..slots only.
 */
export function forEachBatch(
  shape: LoadShape,
  sender: number,
  onBatch: (series: number[], slots: number[], warmup: boolean) => void,
): void {
  const owned = ownedSeries(shape, sender);
  let bs: number[] = [];
  let bt: number[] = [];
  for (let slot = 0; slot <= shape.slots; slot++) {
    for (const i of owned) {
      bs.push(i);
      bt.push(slot);
      if (bs.length === shape.batch) {
        onBatch(bs, bt, slot === 0);
        bs = [];
        bt = [];
      }
    }
    if (slot === 0 && bs.length) {
      onBatch(bs, bt, true);
      bs = [];
      bt = [];
    }
  }
  if (bs.length) onBatch(bs, bt, false);
}

/** An HA load: two replicas of one cluster, the follower `lagSlots` slots behind. */
export interface HaLoad {
  cluster: string;
  /** Leader (heard first), then follower. */
  replicas: [string, string];
  /**
   * How many slots the follower's batches trail the leader's, per sender;
   * 0: each follower batch right after the leader's batch of the same
   * samples (the same rounds at the same time). The connector stages every
   * follower sample and acknowledges it at once, whatever the lag; before
   * commit d23a5a0 (the handover design) it dropped a follower's sample
   * only once the leader had written samples a handover window (half the
   * failover timeout) newer, and held it back (then 503) before that, so
   * a lag of more than that window was needed there.
   */
  lagSlots: number;
}

/**
 * Builds the plan of a load. With `ha`, both replicas send every series:
 * the warm-up is the leader's slot 0; then each sender sends its leader
 * batches in order and, after each, the follower batches whose slots all
 * lie `lagSlots` behind the newest slot that leader batch carried, as a
 * real follower trails its leader. The follower's last `lagSlots` slots are
 * not sent (the leader never gets far enough ahead of them).
 */
export function buildPlan(shape: LoadShape, ha?: HaLoad): Plan {
  const encoded = (replica?: string) => {
    const out: Uint8Array[] = new Array(shape.series);
    for (let i = 0; i < shape.series; i++) {
      const extra = replica === undefined
        ? []
        : [{ name: "cluster", value: ha!.cluster }, { name: "__replica__", value: replica }];
      out[i] = encodeLabels(benchLabels(i, extra));
    }
    return out;
  };
  const request = (
    labels: Uint8Array[],
    series: number[],
    slots: number[],
    role: PlannedRequest["role"],
  ): PlannedRequest => {
    const times = slots.map((slot) => slotTime(shape, slot));
    const values = series.map((i, k) => benchValue(i, slots[k]));
    const body = compressedRequest(series.map((i) => labels[i]), times, values);
    return { body, samples: series.length, role };
  };
  const plan: Plan = { shape, warmup: [], timed: [] };
  if (!ha) {
    const labels = encoded();
    for (let s = 0; s < shape.senders; s++) {
      const warm: PlannedRequest[] = [];
      const timed: PlannedRequest[] = [];
      forEachBatch(shape, s, (series, slots, warmup) => {
        (warmup ? warm : timed).push(request(labels, series, slots, "single"));
      });
      plan.warmup.push(warm);
      plan.timed.push(timed);
    }
    return plan;
  }
  const leader = encoded(ha.replicas[0]);
  const follower = encoded(ha.replicas[1]);
  for (let s = 0; s < shape.senders; s++) {
    const warm: PlannedRequest[] = [];
    const timed: PlannedRequest[] = [];
    const followerBatches: { series: number[]; slots: number[]; last: number }[] = [];
    forEachBatch(shape, s, (series, slots) => {
      followerBatches.push({ series, slots, last: slots[slots.length - 1] });
    });
    let next = 0;
    forEachBatch(shape, s, (series, slots, warmup) => {
      if (warmup) {
        warm.push(request(leader, series, slots, "leader"));
        return;
      }
      timed.push(request(leader, series, slots, "leader"));
      const ahead = slots[slots.length - 1] - ha.lagSlots;
      while (next < followerBatches.length && followerBatches[next].last <= ahead) {
        const f = followerBatches[next++];
        timed.push(request(follower, f.series, f.slots, "follower"));
      }
    });
    plan.warmup.push(warm);
    plan.timed.push(timed);
  }
  return plan;
}

/** Writes a plan to a file the load generator reads (JSON index + bodies). */
export async function savePlan(plan: Plan, path: string): Promise<void> {
  const index: { sender: number; warmup: boolean; samples: number; role: string; len: number }[] =
    [];
  const bodies: Uint8Array[] = [];
  const add = (lists: PlannedRequest[][], warmup: boolean) =>
    lists.forEach((list, sender) => {
      for (const r of list) {
        index.push({ sender, warmup, samples: r.samples, role: r.role, len: r.body.length });
        bodies.push(r.body);
      }
    });
  add(plan.warmup, true);
  add(plan.timed, false);
  const head = enc.encode(JSON.stringify({ shape: plan.shape, index }));
  const total = 4 + head.length + bodies.reduce((s, b) => s + b.length, 0);
  const out = new Uint8Array(total);
  new DataView(out.buffer).setUint32(0, head.length);
  out.set(head, 4);
  let o = 4 + head.length;
  for (const b of bodies) {
    out.set(b, o);
    o += b.length;
  }
  await Deno.writeFile(path, out);
}

/** Reads a plan written by {@linkcode savePlan}. */
export async function loadPlan(path: string): Promise<Plan> {
  const data = await Deno.readFile(path);
  const headLen = new DataView(data.buffer).getUint32(0);
  const { shape, index } = JSON.parse(new TextDecoder().decode(data.subarray(4, 4 + headLen)));
  const plan: Plan = { shape, warmup: [], timed: [] };
  for (let s = 0; s < shape.senders; s++) {
    plan.warmup.push([]);
    plan.timed.push([]);
  }
  let o = 4 + headLen;
  for (const e of index) {
    const body = data.subarray(o, o + e.len);
    o += e.len;
    (e.warmup ? plan.warmup : plan.timed)[e.sender].push({
      body,
      samples: e.samples,
      role: e.role,
    });
  }
  return plan;
}
