/**
 * CPU and memory of processes, from /proc (Linux only).
 *
 * @module
 */

let clockTicks: number | undefined;

/** Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`, 100 on Linux). */
export function ticksPerSecond(): number {
  if (clockTicks !== undefined) return clockTicks;
  try {
    const out = new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).outputSync();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    clockTicks = Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    clockTicks = 100;
  }
  return clockTicks;
}

/** utime + stime (ticks) and start time of a process, or undefined when it is gone. */
export function procTimes(pid: number | "self"): { ticks: number; start: number } | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state): utime is field 14, stime 15, starttime 22.
  return { ticks: Number(rest[11]) + Number(rest[12]), start: Number(rest[19]) };
}

/** CPU seconds a process has used so far. */
export function cpuSeconds(pid: number | "self"): number {
  const t = procTimes(pid);
  return t ? t.ticks / ticksPerSecond() : 0;
}

/** A field of /proc/<pid>/status in kB (VmRSS, VmHWM…), or NaN. */
export function statusKb(pid: number, field: string): number {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

function cmdline(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").trim();
  } catch {
    return "";
  }
}

const PG_AUXILIARY =
  /^postgres: (?:\S+: )?(checkpointer|walwriter|background writer|autovacuum launcher|logical replication launcher|archiver|stats collector|walreceiver|startup)/;

/**
 * Matches the PostgreSQL processes that work for database `db`: its
 * backends and autovacuum workers (the process title names the database)
 * and the shared auxiliary processes (WAL writer, checkpointer, …).
 * Backends of other databases (other people's tests) are left out.
 */
export function postgresOf(db: string): (cmd: string) => boolean {
  return (cmd) =>
    cmd.startsWith("postgres:") && (cmd.includes(` ${db} `) || PG_AUXILIARY.test(cmd));
}

/**
 * Sums the CPU time of every process matching a command-line predicate
 * between `start()` and `stop()`, polling /proc so that processes that
 * start during the interval (a psql's backend) count too. A process that
 * exits between polls loses at most one interval of CPU.
 */
export class CpuSampler {
  #known = new Map<number, { start: number; base: number; last: number }>();
  #ignored = new Map<number, number>(); // pid → start time, known not to match
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(readonly match: (cmd: string) => boolean, readonly intervalMs = 100) {}

  start(): void {
    this.#scan(true);
    this.#timer = setInterval(() => this.#scan(false), this.intervalMs);
  }

  /** Stops polling and returns the CPU seconds used since `start()`. */
  stop(): number {
    clearInterval(this.#timer);
    return this.read();
  }

  /** The CPU seconds used since `start()` so far (polling goes on until `stop()`). */
  read(): number {
    this.#scan(false);
    let ticks = 0;
    for (const p of this.#known.values()) ticks += p.last - p.base;
    return ticks / ticksPerSecond();
  }

  #scan(initial: boolean): void {
    const seen = new Set<number>();
    for (const e of Deno.readDirSync("/proc")) {
      const pid = Number(e.name);
      if (!Number.isInteger(pid)) continue;
      const t = procTimes(pid);
      if (!t) continue;
      seen.add(pid);
      const k = this.#known.get(pid);
      if (k && k.start === t.start) {
        k.last = t.ticks;
        continue;
      }
      if (this.#ignored.get(pid) === t.start) continue;
      const cmd = cmdline(pid);
      if (!this.match(cmd)) {
        // A backend just forked still shows the server's command line, and
        // one that just connected may not name its database yet: look again.
        if (!cmd.includes("postgres")) this.#ignored.set(pid, t.start);
        continue;
      }
      if (k) this.#known.set(-pid - 1e9 * Math.random(), k); // pid reused: keep the old one's time
      // A process found after the start began during the interval: all its time counts.
      this.#known.set(pid, { start: t.start, base: initial ? t.ticks : 0, last: t.ticks });
    }
    for (const pid of this.#ignored.keys()) if (!seen.has(pid)) this.#ignored.delete(pid);
  }
}
