#!/usr/bin/env bash
# Builds (once) the Debian 12 host VM the hostvm harness boots: a debootstrap'd
# bookworm with systemd, the kernel and the packages .ci/install-system.sh
# lists, as an ext4 raw image, plus an uncompressed vmlinux and a tiny initrd
# for direct kernel boot (TCG boots a vmlinux and a 1 MB initrd much faster
# than a bzImage and a generic initramfs).
#
# Cached under $HOSTVM_CACHE (default /var/cache/protoctl-hostvm)/<key>, the
# key a hash of the build scripts, the package list and the host's node binary:
# anything that changes the image changes the key. Prints the image dir.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${HOSTVM_CACHE:-/var/cache/protoctl-hostvm}

# The image gets what a host needs to run the agent (the CI list) plus a booting system.
mapfile -t ci_pkgs < <(bash "$repo/.ci/install-system.sh" --list)
node_bin=$(command -v node)
key=$( { cat "$0" "$here/guest-setup.sh" "$here/make-initrd.sh" "$here/extract-vmlinux.mjs"; printf '%s\n' "${ci_pkgs[@]}"; sha256sum "$node_bin"; } |
  sha256sum | cut -c1-16)
out=$cache/$key
if [[ -f $out/done ]]; then
  echo "$out"
  exit 0
fi

# The mirror apt uses here (the only one reachable from CI machines).
mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
  grep -oE 'https?://[^ ]+' | head -n1 || true)
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
cleanup() {
  for m in proc sys; do
    if mountpoint -q "$work/root/$m"; then umount -l "$work/root/$m"; fi
  done
  # never crosses into a mount that is still there
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
root=$work/root
t0=$(date +%s)
log() { printf '[build-image %3ss] %s\n' "$(($(date +%s) - t0))" "$*" >&2; }

# debootstrap only for a booting system: its --include cannot resolve virtual packages (ansible-core
# needs python3-cffi-backend-api-*), so the CI list goes in with apt-get inside the chroot.
boot_pkgs=(systemd systemd-sysv dbus udev linux-image-amd64 libstdc++6)
log "debootstrap bookworm from $mirror"
# INITRD=No: the kernel's postinst skips a generic initramfs (minutes under load; ours is below)
INITRD=No debootstrap --variant=minbase --include="$(IFS=,; echo "${boot_pkgs[*]}")" bookworm "$root" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

log "apt-get install ${#ci_pkgs[@]} packages of .ci/install-system.sh"
# /dev: debootstrap made the few nodes apt needs; the host's is never bound in
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
cp --remove-destination /etc/resolv.conf "$root/etc/resolv.conf"
# no daemon may start inside the chroot (etcd-server would)
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive INITRD=No "$@"; }
{ in_root apt-get update -q && in_root apt-get install -y -q --no-install-recommends "${ci_pkgs[@]}"; } \
  >"$work/apt.log" 2>&1 || {
  tail -n 30 "$work/apt.log" >&2
  exit 1
}
in_root apt-get clean
rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf"
for m in sys proc; do umount "$root/$m"; done

log "configure the guest"
install -m 0755 "$node_bin" "$root/usr/local/bin/node"
install -m 0755 "$here/guest-setup.sh" "$root/tmp/guest-setup.sh"
chroot "$root" /bin/bash /tmp/guest-setup.sh
rm -f "$root/tmp/guest-setup.sh"

log "kernel: uncompressed vmlinux"
vmlinuz=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n1)
kver=${vmlinuz##*/vmlinuz-}
mkdir -p "$work/out"
node "$here/extract-vmlinux.mjs" "$vmlinuz" "$work/out/vmlinux"

log "initrd: virtio, ext4, 9p for $kver"
bash "$here/make-initrd.sh" "$root" "$kver" "$work/out/initrd"

log "ext4 image"
rm -rf "$root/var/lib/apt/lists"/* "$root/boot"/initrd.img*
truncate -s 4G "$work/out/rootfs.img"
mkfs.ext4 -q -L hostvm-root -d "$root" "$work/out/rootfs.img"
echo "$kver" >"$work/out/kernel-version"
touch "$work/out/done"
rm -rf "$out"
mv "$work/out" "$out"
log "done: $out"
echo "$out"
