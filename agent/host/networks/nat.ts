/**
 * Outbound NAT for a `private` env that asks for it (`env create --nat`): its
 * packets leave through the node's own addresses, as Docker's default bridge
 * does. Off by default: a private env reaches its host side only.
 *
 * Per env, in the agent's network namespace:
 * - `net.ipv4.ip_forward=1` (the kernel forwards nothing otherwise; like
 *   Docker, it stays on: other users of the host may rely on it by then);
 * - `POSTROUTING -s <env addr> ! -o <env veth> -j MASQUERADE` in `nat`;
 * - `FORWARD -i <veth> -j ACCEPT` and `FORWARD -o <veth> RELATED,ESTABLISHED
 *   -j ACCEPT` in `filter` (a host whose FORWARD policy is DROP still passes it).
 * Every rule carries the comment `protoctl:<node>/<env>`, so stop, a crash
 * cleanup and the leak check find exactly these. Rules are removed with the
 * same specs (`-D`), and added only once (`-C` first).
 */
import { run } from "../../../common/exec.js";

export interface NatTarget {
  node: string;
  env: string;
  /** Host side of the env's veth. */
  hostIf: string;
  /** The env's IPv4 address (no prefix). */
  address: string;
}

/** The iptables rules of one env as [table, chain, rule...] (pure). */
export function natRules(t: NatTarget): Array<{ table: string; chain: string; rule: string[] }> {
  const tag = ["-m", "comment", "--comment", `protoctl:${t.node}/${t.env}`];
  return [
    {
      table: "nat",
      chain: "POSTROUTING",
      rule: ["-s", `${t.address}/32`, "!", "-o", t.hostIf, ...tag, "-j", "MASQUERADE"],
    },
    { table: "filter", chain: "FORWARD", rule: ["-i", t.hostIf, ...tag, "-j", "ACCEPT"] },
    {
      table: "filter",
      chain: "FORWARD",
      rule: ["-o", t.hostIf, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", ...tag, "-j", "ACCEPT"],
    },
  ];
}

export class Nat {
  /** `netns`: the named network namespace the env's veth lives in (as NetworkDriver). */
  constructor(private readonly netns?: string) {}

  private cmd(tool: string, args: string[], allowFailure = false) {
    const pre = this.netns ? ["nsenter", `--net=/run/netns/${this.netns}`, tool] : [tool];
    return run(pre[0]!, [...pre.slice(1), ...args], { allowFailure });
  }

  async enable(t: NatTarget): Promise<void> {
    await this.cmd("sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"]);
    for (const r of natRules(t)) {
      const have = await this.cmd("iptables", ["-w", "-t", r.table, "-C", r.chain, ...r.rule], true);
      // FORWARD rules go first: a DROP or REJECT rule already in the chain must not shadow them
      const op = r.chain === "FORWARD" ? ["-I", r.chain, "1"] : ["-A", r.chain];
      if (have.exitCode !== 0) await this.cmd("iptables", ["-w", "-t", r.table, ...op, ...r.rule]);
    }
  }

  /** Removes the env's rules; absent ones are fine (idempotent). */
  async disable(t: NatTarget): Promise<void> {
    for (const r of natRules(t)) {
      // a rule added twice by a crashed agent goes with repeated deletes
      for (let i = 0; i < 4; i++) {
        const d = await this.cmd("iptables", ["-w", "-t", r.table, "-D", r.chain, ...r.rule], true);
        if (d.exitCode !== 0) break;
      }
    }
  }
}
