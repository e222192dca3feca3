# Sourced by run-checks.sh (its result/check helpers, $R), after `protoctl down`.
# deploy/README.md on this host: etcd, a controller and an agent run under the
# units of deploy/systemd; the node joins with a token from /etc/protoctl/agent.env;
# an env survives `systemctl restart protoctl-agent`. Then a second agent (a
# transient unit: another "machine") gets the base over the kernel NBD client:
# attached on /dev/nbdN, an env started on it, hydrated, the device released.
# etcd speaks plain HTTP on loopback here (the guide's etcd TLS is openssl work
# the VM need not repeat), so the controller keeps its CA on disk.

waitfor() { # waitfor SECONDS CMD...: retries CMD every second
  local n=$1 i
  shift
  for ((i = 0; i < n; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}
node_ready() { protoctl node ls 2>/dev/null | awk -v n="$1" '$1 == n' | grep -qw Ready; }
unit_log() { journalctl -u "$1" -o cat --no-pager 2>/dev/null; }
save_logs() {
  for u in protoctl-etcd protoctl-controller protoctl-agent protoctl-agent2; do unit_log "$u" | tail -n 200 >"$R/unit-$u.log"; done
}

# /usr/local/bin/protoctl, as deploy/install.sh links it
printf '#!/bin/sh\nexec node /project/dist/cli/main.js "$@"\n' >/usr/local/bin/protoctl
chmod +x /usr/local/bin/protoctl
install -m 0644 /project/deploy/systemd/*.service /etc/systemd/system/
install -d -m 0755 /etc/protoctl
cat >/etc/protoctl/etcd.yaml <<'YAML'
name: cp1
data-dir: /var/lib/etcd/protoctl
listen-client-urls: http://127.0.0.1:2379
advertise-client-urls: http://127.0.0.1:2379
listen-peer-urls: http://127.0.0.1:2380
initial-advertise-peer-urls: http://127.0.0.1:2380
initial-cluster: cp1=http://127.0.0.1:2380
initial-cluster-state: new
log-level: warn
YAML
cat >/etc/protoctl/controller.yaml <<'YAML'
listen: 127.0.0.1:7443
stateDir: /var/lib/protoctl/controller
etcd:
  endpoints: [http://127.0.0.1:2379]
  prefix: /protoctl/v1/
tls:
  caStore: disk
log:
  format: json
# Under TCG emulation the node runs 10-30x slower than on hardware: the agent restart below (stop,
# Node's start, pool, adoption, join) took about 30 s here, the default grace before a NotReady
# node's envs are Lost (about 2 s on hardware). The grace scales with the machine.
reconcile:
  lostGraceSeconds: 180
YAML
cat >/etc/protoctl/agent.yaml <<'YAML'
name: n1
listen: 127.0.0.1:7444
controller: 127.0.0.1:7443
stateDir: /var/lib/protoctl/agent
pool:
  kind: tmpfs
  sizeBytes: 1G
log:
  format: json
YAML
systemctl daemon-reload
check units:etcd+controller "systemctl enable --now protoctl-etcd protoctl-controller" \
  systemctl enable --now protoctl-etcd protoctl-controller
check units:admin "the controller wrote admin.json; context import --use" \
  sh -c 'for i in $(seq 1200); do [ -s /var/lib/protoctl/controller/admin.json ] && break; sleep 1; done; protoctl context import /var/lib/protoctl/controller/admin.json --name vm --use'

tok=$(protoctl node token --ttl 30m 2>"$R/token.err" | grep -oE 'protoctl1\.[A-Za-z0-9._-]+' | head -n1)
install -m 0600 /dev/null /etc/protoctl/agent.env
echo "PROTOCTL_AGENT_JOIN_TOKEN=$tok" >/etc/protoctl/agent.env
systemctl enable --now protoctl-agent
if waitfor 1200 node_ready n1; then result PASS units:agent-joined "n1 Ready: $(protoctl node ls 2>&1 | awk '$1 == "n1"' | tr -s ' ')"; else
  result FAIL units:agent-joined "n1 not Ready: $(protoctl node ls 2>&1 | tr '\n\t' '  ')"
fi
check units:tls "the joined agent holds a node certificate" test -s /var/lib/protoctl/agent/tls/node.crt -o -n "$(ls /var/lib/protoctl/agent/tls 2>/dev/null)"

check units:nbd-loaded "the agent unit's ExecStartPre loaded nbd: $(ls /dev/nbd* 2>/dev/null | wc -l) devices" test -b /dev/nbd0
check units:base "base build busybox --busybox (on n1)" timeout 1800 protoctl base build busybox --busybox
check units:env "env create u1 --node n1" timeout 1800 protoctl env create u1 --base busybox --node n1
scope=/sys/fs/cgroup/protoctl.slice/protoctl_n1_u1.scope
leader_before=$(cat "$scope/payload/cgroup.procs" 2>/dev/null | head -n1)
agent_before=$(systemctl show -p MainPID --value protoctl-agent)

# -- an env survives an agent restart
systemctl restart protoctl-agent
restart_rc=$?
sleep 2
agent_after=$(systemctl show -p MainPID --value protoctl-agent)
leader_after=$(cat "$scope/payload/cgroup.procs" 2>/dev/null | head -n1)
check units:restart "systemctl restart protoctl-agent: exit $restart_rc, $(systemctl is-active protoctl-agent), main pid $agent_before -> $agent_after" \
  test "$restart_rc" = 0 -a "$agent_before" != "$agent_after" -a "$(systemctl is-active protoctl-agent)" = active
check units:env-survives "env u1's first process $leader_before before the restart, ${leader_after:-none} after" \
  test -n "$leader_before" -a "$leader_before" = "$leader_after"
waitfor 1200 node_ready n1
out=$(timeout 300 protoctl env exec u1 -- echo after-restart 2>&1)
check units:exec-after-restart "got: $out" test "$out" = after-restart
check units:adopted "the new agent adopted it: $(unit_log protoctl-agent | grep -c 'adopted running machine') 'adopted running machine' lines" \
  sh -c "journalctl -u protoctl-agent -o cat --no-pager | grep -q 'adopted running machine'"

# -- kernel NBD: a second node attaches busybox from n1 with nbd-client
modprobe nbd nbds_max=8
check nbd:module "modprobe nbd: $(ls /dev/nbd* 2>/dev/null | wc -l) devices, $(nbd-client -V 2>&1 | head -n1)" test -b /dev/nbd0
cat >/etc/protoctl/agent2.yaml <<'YAML'
name: n2
listen: 127.0.0.1:7454
controller: 127.0.0.1:7443
stateDir: /var/lib/protoctl/agent2
pool:
  kind: tmpfs
  sizeBytes: 1G
log:
  format: json
YAML
tok2=$(protoctl node token --ttl 30m 2>>"$R/token.err" | grep -oE 'protoctl1\.[A-Za-z0-9._-]+' | head -n1)
install -m 0600 /dev/null /etc/protoctl/agent2.env
echo "PROTOCTL_AGENT_JOIN_TOKEN=$tok2" >/etc/protoctl/agent2.env
systemd-run --unit=protoctl-agent2 -p Delegate=yes -p KillMode=process -p EnvironmentFile=/etc/protoctl/agent2.env \
  /usr/local/bin/protoctl agent --config /etc/protoctl/agent2.yaml
if waitfor 1200 node_ready n2; then result PASS nbd:agent2-joined "n2 Ready"; else
  result FAIL nbd:agent2-joined "n2 not Ready: $(protoctl node ls 2>&1 | tr '\n\t' '  ')"
fi
check nbd:env-create "env create k1 --node n2 (the scheduler attaches busybox there first)" \
  timeout 1800 protoctl env create k1 --base busybox --node n2
attached=$(unit_log protoctl-agent2 | grep '"msg":"attached"' | head -n1)
echo "n2 attach log: $attached"
check nbd:kernel-attach "n2's attach: $(echo "$attached" | grep -oE '"transport":"[a-z]+"')" \
  test -n "$(echo "$attached" | grep -F '"transport":"kernel"')"
out=$(timeout 300 protoctl env exec k1 -- cat /etc/hostname 2>&1)
check nbd:env-exec "k1 on the attached seed: $out" test "$out" = k1
check nbd:hydrated "n2 logged the hydration" waitfor 1200 sh -c "journalctl -u protoctl-agent2 -o cat --no-pager | grep -q '\"msg\":\"hydrated\"'"
# connected = a client pid in sysfs (a disconnected device may keep its last size on 6.1)
check nbd:detached "no /dev/nbd* connected after hydration: $(grep -l . /sys/block/nbd*/pid 2>/dev/null | wc -l) pid files" \
  waitfor 60 sh -c "! grep -qs . /sys/block/nbd*/pid"
out=$(timeout 300 protoctl env exec k1 -- cat /etc/hostname 2>&1)
check nbd:env-after "k1 after the NBD device went: $out" test "$out" = k1

save_logs
check units:env-rm "env rm u1 k1" timeout 1800 protoctl env rm u1 k1
systemctl stop protoctl-agent2 protoctl-agent protoctl-controller protoctl-etcd
