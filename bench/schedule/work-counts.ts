/**
 * What the controller asks of etcd and of the agents per placed env, read
 * from etcd's own Prometheus endpoint and the fake agents' call counters
 * before and after the burst: the same method for any build of the
 * controller, since neither side is the controller's own reporting.
 */

/** Counter samples of a Prometheus text exposition, keyed by `name{labels}` as written. */
export function parseCounters(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const sp = line.lastIndexOf(" ");
    if (sp <= 0) continue;
    const v = Number(line.slice(sp + 1));
    if (Number.isFinite(v)) out.set(line.slice(0, sp), v);
  }
  return out;
}

/** The value of `name{…}` summed over the samples whose labels include every `match` pair. */
export function sumOf(
  samples: Map<string, number>,
  name: string,
  match: Record<string, string> = {},
): number {
  const wanted = Object.entries(match).map(([k, v]) => `${k}="${v}"`);
  let total = 0;
  for (const [key, v] of samples) {
    const brace = key.indexOf("{");
    if ((brace < 0 ? key : key.slice(0, brace)) !== name) continue;
    const labels = brace < 0 ? "" : key.slice(brace);
    if (wanted.every((w) => labels.includes(w))) total += v;
  }
  return total;
}

/** etcd's unary KV/Lease requests by method, its MVCC operations and watch events. */
export function etcdWork(samples: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const method of ["Range", "Txn", "Put", "DeleteRange", "LeaseGrant"]) {
    out[`grpc_${method}`] = sumOf(samples, "grpc_server_handled_total", { grpc_method: method });
  }
  // streams: their messages, not their ends
  out.grpc_LeaseKeepAlive_msgs = sumOf(samples, "grpc_server_msg_received_total", {
    grpc_method: "LeaseKeepAlive",
  });
  out.grpc_Watch_requests = sumOf(samples, "grpc_server_msg_received_total", { grpc_method: "Watch" });
  // etcd 3.4 has both names for some; the stable one when present
  const mvcc = (op: string) =>
    sumOf(samples, `etcd_mvcc_${op}_total`) || sumOf(samples, `etcd_debugging_mvcc_${op}_total`);
  out.mvcc_range = mvcc("range");
  out.mvcc_put = mvcc("put");
  out.mvcc_txn = mvcc("txn");
  out.mvcc_delete = mvcc("delete");
  out.watch_events_sent = sumOf(samples, "etcd_debugging_mvcc_events_total");
  return out;
}

/** (after − before) / per for each key of `after`, rounded to 3 decimals. */
export function perEach(
  before: Record<string, number>,
  after: Record<string, number>,
  per: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) out[k] = Number(((v - (before[k] ?? 0)) / per).toFixed(3));
  return out;
}

/** Calls by method summed over agents (each a map method → count). */
export function agentCalls(agents: { calls: Map<string, number> }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of agents) for (const [m, n] of a.calls) out[m] = (out[m] ?? 0) + n;
  return out;
}

export async function scrapeEtcd(endpoint: string): Promise<Record<string, number>> {
  const res = await fetch(`${endpoint}/metrics`);
  if (!res.ok) throw new Error(`etcd /metrics answered ${res.status}`);
  return etcdWork(parseCounters(await res.text()));
}
