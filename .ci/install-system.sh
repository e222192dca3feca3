#!/usr/bin/env bash
# Installs every Debian package protoctl and its test suite need. Idempotent.
set -euo pipefail
PKGS=(etcd-server etcd-client btrfs-progs systemd-container qemu-utils nbdkit libnbd-bin fuse3
      busybox-static debootstrap iproute2 util-linux kmod procps psmisc tmux zstd xz-utils
      python3 ansible-core bridge-utils iptables ca-certificates openssl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
