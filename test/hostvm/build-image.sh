#!/usr/bin/env bash
# Builds (once) the Debian 12 host VM the hostvm harness boots: a debootstrap'd
# bookworm with systemd, the kernel and the packages .ci/install-system.sh
# lists, as an ext4 raw image, plus an uncompressed vmlinux and a tiny initrd
# for direct kernel boot (TCG boots a vmlinux and a 1 MB initrd much faster
# than a bzImage and a generic initramfs).
#
# Cached under $HOSTVM_CACHE (default /var/cache/protoctl-hostvm)/<key>, the
# key a hash of this script, the package list and the host's node binary:
# anything that changes the image changes the key. Prints the image dir.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${HOSTVM_CACHE:-/var/cache/protoctl-hostvm}

# The image gets what a host needs to run the agent (the CI list) plus a booting system.
mapfile -t ci_pkgs < <(bash "$repo/.ci/install-system.sh" --list)
vm_pkgs=(systemd systemd-sysv dbus udev linux-image-amd64 libstdc++6 "${ci_pkgs[@]}")
node_bin=$(command -v node)
key=$( { cat "$0" "$here/guest-setup.sh"; printf '%s\n' "${vm_pkgs[@]}"; sha256sum "$node_bin"; } |
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
  for m in dev/pts dev proc sys; do
    mountpoint -q "$work/root/$m" && umount -l "$work/root/$m"
  done
  rm -rf "$work"
}
trap cleanup EXIT
root=$work/root
t0=$(date +%s)
log() { printf '[build-image %3ss] %s\n' "$(($(date +%s) - t0))" "$*" >&2; }

log "debootstrap bookworm from $mirror (${#vm_pkgs[@]} packages asked)"
incl=$(IFS=,; echo "${vm_pkgs[*]}")
debootstrap --variant=minbase --include="$incl" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

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
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/* "$root/boot"/initrd.img* 
truncate -s 4G "$work/out/rootfs.img"
mkfs.ext4 -q -L hostvm-root -d "$root" "$work/out/rootfs.img"
echo "$kver" >"$work/out/kernel-version"
touch "$work/out/done"
rm -rf "$out"
mv "$work/out" "$out"
log "done: $out"
echo "$out"
