/**
 * Leak check, pure part: parse what the system reports (mountinfo, `losetup
 * -J`, `ip netns list`, `ip -j link`, /proc/PID/cmdline) into a snapshot, and
 * diff two snapshots into a list of things the tests left behind.
 *
 * Processes are told apart by pid + start time (pids get reused). Every
 * process the tests start inherits this run's PROTOCTL_TEST_RUN marker, so a
 * process is watched when it carries a marker (whatever it runs and however
 * its command line is spelled) or when it is of a kind the tests start
 * (etcd, nspawn, NBD tools, protoctl daemons) without one. A process carrying
 * another run's marker belongs to that run (several engineers share one
 * machine), so it is not ours to report.
 */

export const RUN_MARKER_ENV = "PROTOCTL_TEST_RUN";

export interface ProcessEntry {
  /** `pid:starttime`, unique over the machine's uptime. */
  key: string;
  pid: number;
  kind: string;
  argv: string[];
  /** Value of PROTOCTL_TEST_RUN in the process environment, if any. */
  marker?: string;
}

export interface Snapshot {
  /** `mountpoint fstype source`, one per mount (stacked mounts repeat). */
  mounts: string[];
  /** `/dev/loopN backing-file`. */
  loops: string[];
  netns: string[];
  /** Interface names in the root network namespace. */
  links: string[];
  processes: ProcessEntry[];
  /** Absolute paths of cgroup directories named protoctl*, and of every directory below one. */
  cgroups: string[];
  /** Connected kernel NBD devices: `nbdN pid=P`. */
  nbd: string[];
  /** Firewall rules (iptables-save / ip6tables-save `-A` lines, counters dropped). */
  rules: string[];
  /** Entries of the temp directory named protoctl* (the prefix every test's mkdtemp uses). */
  tmpdirs: string[];
}

export interface Leak {
  kind: "mount" | "loop" | "netns" | "link" | "process" | "cgroup" | "nbd" | "rule" | "tmpdir";
  what: string;
}

/** Mount points that appear as a side effect of using a feature once and stay by design. */
const IGNORED_MOUNTPOINTS = [
  // `ip netns add` turns /run/netns into a shared bind mount the first time and leaves it.
  /^\/run\/netns$/,
  // The fuse control filesystem is mounted on first use of /dev/fuse on some systems.
  /^\/sys\/fs\/fuse\/connections$/,
];

/** Undoes the octal escapes (\040 space, \011 tab, \012 newline, \134 backslash) of mountinfo. */
export function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** One entry per mount: `mountpoint fstype source`, from /proc/self/mountinfo text. */
export function parseMountinfo(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const [pre, post] = line.split(" - ");
    if (pre === undefined || post === undefined) continue;
    const fields = pre.split(" ");
    const mountpoint = fields[4];
    const [fstype, source] = post.split(" ");
    if (mountpoint === undefined || fstype === undefined) continue;
    const mp = unescapeMountField(mountpoint);
    if (IGNORED_MOUNTPOINTS.some((re) => re.test(mp))) continue;
    out.push(`${mp} ${fstype} ${unescapeMountField(source ?? "")}`);
  }
  return out;
}

/** `/dev/loopN backing-file` per attached loop device, from `losetup -J` (empty output: none). */
export function parseLosetupJson(text: string): string[] {
  if (!text.trim()) return [];
  const parsed = JSON.parse(text) as { loopdevices?: Array<{ name: string; "back-file"?: string | null }> };
  return (parsed.loopdevices ?? []).map((d) => `${d.name} ${d["back-file"] ?? ""}`.trim());
}

/** Names from `ip netns list` ("name" or "name (id: 3)" per line). */
export function parseNetnsList(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim().split(" ")[0] ?? "")
    .filter((n) => n !== "");
}

/** Interface names from `ip -j link show`. */
export function parseIpLinkJson(text: string): string[] {
  if (!text.trim()) return [];
  return (JSON.parse(text) as Array<{ ifname: string }>).map((l) => l.ifname);
}

const WATCHED_BINARIES = new Set(["etcd", "systemd-nspawn", "qemu-nbd", "nbdkit", "nbdfuse", "nbdcopy"]);

function basename(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

/** Entry scripts that run one protoctl daemon each (tests and benches start them directly). */
const DAEMON_ENTRIES: Array<[RegExp, string]> = [
  [/(^|\/)agent-process\.[cm]?[jt]s$/, "protoctl agent"],
  [/(^|\/)run-controller\.[cm]?[jt]s$/, "protoctl controller"],
];
const CLI_SUBCOMMANDS = new Set(["agent", "controller", "supervise"]);

/**
 * The kind of a process the tests spawn, from its argv, or undefined for
 * anything else. protoctl daemons are `protoctl agent|controller|supervise`,
 * `node …/cli/main.js agent|…` or `node … …/agent-process.ts` and
 * `…/run-controller.ts`; the repo folder's name plays no part.
 */
export function processKind(argv: readonly string[]): string | undefined {
  const first = argv[0];
  if (first === undefined) return undefined;
  const bin = basename(first);
  if (WATCHED_BINARIES.has(bin)) return bin;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    for (const [re, kind] of DAEMON_ENTRIES) if (re.test(a)) return kind;
    if (basename(a) === "protoctl" || /(^|\/)cli\/main\.[cm]?[jt]s$/.test(a)) {
      const sub = argv[i + 1];
      if (sub !== undefined && CLI_SUBCOMMANDS.has(sub)) return `protoctl ${sub}`;
    }
  }
  return undefined;
}

/** node options whose value is the next argument (so it is not the script). */
const NODE_VALUE_OPTIONS = new Set(["--import", "-r", "--require", "--loader", "--experimental-loader"]);

/** A name for any other process a test left running: its program, or node's script. */
export function describeProcess(argv: readonly string[]): string {
  const bin = basename(argv[0] ?? "?");
  if (bin !== "node") return bin;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i] ?? "";
    if (NODE_VALUE_OPTIONS.has(a)) i++;
    else if (a === "-e" || a === "--eval" || a === "-p") return bin;
    else if (!a.startsWith("-")) return `node ${basename(a)}`;
  }
  return bin;
}

/** `nbdN pid=P` for each connected kernel NBD device, from `[name, pid file text]` pairs. */
export function parseNbdDevices(entries: ReadonlyArray<[string, string | undefined]>): string[] {
  return entries
    .filter(([name, pid]) => /^nbd\d+$/.test(name) && pid !== undefined && pid.trim() !== "")
    .map(([name, pid]) => `${name} pid=${pid!.trim()}`)
    .sort();
}

/** Rule lines (`-A …`) of iptables-save output, with the table they are in; counters dropped. */
export function parseIptablesSave(text: string, family: "ip" | "ip6"): string[] {
  const out: string[] = [];
  let table = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("*")) table = line.slice(1);
    else if (line.startsWith("-A ")) out.push(`${family} ${table} ${line.replace(/^\[\d+:\d+\]\s*/, "")}`);
  }
  return out;
}

/** argv from the NUL-separated bytes of /proc/PID/cmdline. */
export function parseCmdline(raw: string): string[] {
  const parts = raw.split("\0");
  if (parts.at(-1) === "") parts.pop();
  return parts;
}

/** Value of `name` in the NUL-separated bytes of /proc/PID/environ. */
export function environValue(raw: string, name: string): string | undefined {
  const prefix = `${name}=`;
  for (const kv of raw.split("\0")) if (kv.startsWith(prefix)) return kv.slice(prefix.length);
  return undefined;
}

/** Start time (clock ticks since boot, field 22) from /proc/PID/stat; comm may hold spaces. */
export function parseStatStartTime(stat: string): string {
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state), so field 22 is rest[19].
  return rest[19] ?? "0";
}

/** Items of `after` not in `before`, counting repeats (a second mount on the same point is new). */
export function multisetAdded(before: readonly string[], after: readonly string[]): string[] {
  const counts = new Map<string, number>();
  for (const b of before) counts.set(b, (counts.get(b) ?? 0) + 1);
  const added: string[] = [];
  for (const a of after) {
    const n = counts.get(a) ?? 0;
    if (n > 0) counts.set(a, n - 1);
    else added.push(a);
  }
  return added;
}

/**
 * Loop devices still bound to a protoctl pool image whose tmpfs is unmounted everywhere: the
 * kernel then names the file from its own filesystem's root ("/pool.img"). Nothing can use or
 * find such a device again, so it is a leak whenever it is seen, even if it was there before.
 */
export function orphanedLoops(loops: readonly string[]): string[] {
  return loops.filter((l) => /^\/dev\/loop\d+ \/pool\.img$/.test(l));
}

/** What is in `after` and was not in `before`, attributing processes to run `runId`. */
export function diffSnapshots(before: Snapshot, after: Snapshot, runId: string): Leak[] {
  const leaks: Leak[] = [];
  const push = (kind: Leak["kind"], items: string[]) => {
    for (const what of items) leaks.push({ kind, what });
  };
  push("mount", multisetAdded(before.mounts, after.mounts));
  const addedLoops = multisetAdded(before.loops, after.loops);
  push("loop", addedLoops);
  push(
    "loop",
    orphanedLoops(after.loops)
      .filter((l) => !addedLoops.includes(l))
      .map((l) => `${l} (orphaned before this run too: its tmpfs is gone; losetup -d it)`),
  );
  push("netns", multisetAdded(before.netns, after.netns));
  push("link", multisetAdded(before.links, after.links));
  const known = new Set(before.processes.map((p) => p.key));
  for (const p of after.processes) {
    if (known.has(p.key)) continue;
    if (p.marker !== undefined && p.marker !== runId) continue;
    leaks.push({ kind: "process", what: `pid ${p.pid} (${p.kind}): ${p.argv.join(" ").slice(0, 200)}` });
  }
  push("cgroup", multisetAdded(before.cgroups, after.cgroups));
  push("nbd", multisetAdded(before.nbd, after.nbd));
  push("rule", multisetAdded(before.rules, after.rules));
  push("tmpdir", multisetAdded(before.tmpdirs, after.tmpdirs));
  return leaks;
}

/** A report a person can act on: one line per leaked thing, grouped by kind. */
export function formatLeaks(leaks: readonly Leak[]): string {
  if (leaks.length === 0) return "leak check: nothing left behind";
  const lines = [`leak check FAILED: the integration tests left ${leaks.length} thing(s) behind:`];
  for (const l of leaks) lines.push(`  ${l.kind.padEnd(7)} ${l.what}`);
  lines.push("Every test must undo what it made; clean these up by hand before rerunning.");
  return lines.join("\n");
}
