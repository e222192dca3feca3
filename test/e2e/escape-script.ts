/**
 * What the escape suite (escape.int.test.ts) runs as root inside an env: one
 * busybox shell script, the same for every way in (the env's own PID 1 side,
 * `env exec`, `lab exec`, lab `startup:`). Each attempt prints one line
 * `ATTEMPT <name> <exit code> <output>`; the test asserts on each line.
 * Every write that could succeed writes a harmless value (`h` to sysrq is the
 * help text; a sysctl gets its own current value back).
 */

/** The script; $1 = "MAJ MIN" of a host block device, $2 = a unique sleep length (found from the host). */
export const ESCAPE_SCRIPT = `
set -u
dev=$1
sleeper=$2
try() { name=$1; shift; out=$( ("$@") 2>&1 ); rc=$?; echo "ATTEMPT $name $rc $(echo "$out" | tr '\\n' ' ')"; }
mkdir -p /tmp/esc /tmp/esc/m /tmp/esc/p /tmp/esc/s /tmp/esc/c
rm -f /tmp/esc/blk
try mknod mknod /tmp/esc/blk b $dev
try read-block dd if=/tmp/esc/blk of=/dev/null bs=512 count=1
try mount-disk mount -o ro /tmp/esc/blk /tmp/esc/m
try sysrq sh -c 'echo h > /proc/sysrq-trigger'
try mount-proc-sysrq sh -c 'mount -t proc proc /tmp/esc/p && echo h > /tmp/esc/p/sysrq-trigger'
try sysctl sh -c 'v=$(cat /proc/sys/kernel/printk_ratelimit) && echo "$v" > /proc/sys/kernel/printk_ratelimit'
try mount-sysfs-uevent sh -c 'mount -t sysfs sys /tmp/esc/s && cat /tmp/esc/s/kernel/uevent_seqnum > /tmp/esc/s/kernel/uevent_helper'
printf '\\177ELF-not-a-module' > /tmp/esc/x.ko
try insmod insmod /tmp/esc/x.ko
try modprobe-path sh -c 'cat /proc/sys/kernel/modprobe > /proc/sys/kernel/modprobe'
# these two move this shell ($$) if they can; the host checks where the sleeper below ended up
try cgroup-parent sh -c 'for f in /sys/fs/cgroup/*/cgroup.procs /sys/fs/cgroup/*/../../cgroup.procs; do echo '$$' > "$f"; done'
try cgroup-mount sh -c 'mount -t cgroup -o memory none /tmp/esc/c && echo '$$' > /tmp/esc/c/cgroup.procs && for d in /tmp/esc/c/*/; do echo '$$' > "$d/../cgroup.procs"; done'
echo "PIDNS $(for p in /proc/[0-9]*; do readlink $p/ns/pid; done 2>/dev/null | sort -u | tr '\\n' ' ')"
echo "SELF $(grep -E '^(CapBnd|Seccomp|NoNewPrivs):' /proc/self/status | tr '\\t\\n' '  ')"
# a process left behind after the attempts (their cgroup moves included), for the host to inspect
sleep "$sleeper" </dev/null >/dev/null 2>&1 &
echo DONE
`;

/**
 * An /sbin/init for a boot-mode env: runs the attempts as PID 1's child,
 * then serves as init. It makes /run/systemd/private because the driver
 * counts a booted env as started once that path exists (systemd's socket).
 * PEER: once an exec'd process writes its pid to /tmp/peer, PID 1 records
 * how it sees that process (its status and user namespace) in /tmp/peer.out.
 */
export function escapeInit(dev: string, sleeper: number): string {
  return `#!/bin/sh
trap 'exit 0' TERM INT HUP
/escape.sh '${dev}' ${sleeper} > /escape-pid1.out 2>&1
mkdir -p /run/systemd && : > /run/systemd/private
while :; do
  if [ -s /tmp/peer ] && [ ! -e /tmp/peer.out ]; then
    p=$(cat /tmp/peer)
    { echo "MINE $(readlink /proc/self/ns/user) $(grep -E '^CapBnd:' /proc/self/status | tr '\\t' ' ')"
      echo "PEER $(readlink /proc/$p/ns/user) $(grep -E '^CapBnd:' /proc/$p/status | tr '\\t' ' ')"
      echo "PEERSECCOMP $(grep -E '^Seccomp:' /proc/$p/status | tr '\\t' ' ')"
      echo "PEERUIDMAP $(cat /proc/$p/uid_map)"; } > /tmp/peer.tmp && mv /tmp/peer.tmp /tmp/peer.out
  fi
  sleep 0.1
done
`;
}

export interface EscapeResult {
  attempts: Map<string, { code: number; output: string }>;
  pidNamespaces: string[];
  self: string;
  done: boolean;
}

export function parseEscape(text: string): EscapeResult {
  const attempts = new Map<string, { code: number; output: string }>();
  let pidNamespaces: string[] = [];
  let self = "";
  for (const line of text.split("\n")) {
    const m = /^ATTEMPT (\S+) (\d+) ?(.*)$/.exec(line);
    if (m) attempts.set(m[1]!, { code: Number(m[2]), output: m[3] ?? "" });
    if (line.startsWith("PIDNS ")) pidNamespaces = line.slice(6).trim().split(/\s+/).filter(Boolean);
    if (line.startsWith("SELF ")) self = line.slice(5).trim();
  }
  return { attempts, pidNamespaces, self, done: /^DONE$/m.test(text) };
}
