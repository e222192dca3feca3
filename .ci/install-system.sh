#!/usr/bin/env bash
# Installs every Debian package protoctl and its test suite need, and loads the
# kernel modules they use. Idempotent; used by .ci/run and deploy/install.sh.
set -euo pipefail
PKGS=(etcd-server etcd-client btrfs-progs systemd-container qemu-utils nbdkit libnbd-bin fuse3
      busybox-static debootstrap nbd-client iproute2 util-linux mount kmod procps psmisc tmux zstd xz-utils
      python3 ansible-core bridge-utils iptables ca-certificates openssl)
# `--list`: the list above, one a line (test/hostvm builds its Debian image from it).
if [[ ${1:-} == --list ]]; then printf '%s\n' "${PKGS[@]}"; exit 0; fi
# Only where protoctl is built: cc compiles protoctl-enter (agent/host/machines/enter); the host VM
# harness boots the host's build, so its image (the list above) needs no compiler.
PKGS+=(gcc libc6-dev)
# Only on the machine that runs the tests: the host VM harness (test/hostvm) boots a Debian VM;
# the web console's browser test drives Debian's chromium (playwright-core, no browser download).
PKGS+=(qemu-system-x86 chromium)
# Only for `npm run bench -- cli-cycle`: it times LXC's own CLI cycle on the same rootfs.
PKGS+=(lxc)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  # Packages like etcd-server would start their system service on install; protoctl runs its
  # own etcd (tests: one per fixture on free ports; `protoctl up`: its own data dir), so keep
  # daemons from starting during this install (policy-rc.d exit 101 = "not allowed").
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
  fi
  trap 'if [[ $made_policy == 1 ]]; then rm -f "$policy"; fi' EXIT
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# A system etcd service would only compete for memory and port 2379: protoctl never uses it.
if command -v systemctl >/dev/null && systemctl is-enabled etcd >/dev/null 2>&1; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi

# Kernel modules: where a feature is built in (or /lib/modules is absent) modprobe fails and
# that is fine; `protoctl doctor` checks the features themselves.
for m in btrfs overlay loop fuse vxlan bridge veth; do
  modprobe "$m" 2>/dev/null || true
done
