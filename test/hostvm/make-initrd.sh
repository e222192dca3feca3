#!/usr/bin/env bash
# A tiny initrd (static busybox, the modules to reach an ext4 root on
# virtio-blk and the 9p shares, a 20-line init), instead of a generic
# initramfs that probes everything: usage: make-initrd.sh ROOT KVER OUT.
set -euo pipefail
root=$1 kver=$2 out=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/dev" "$dir/proc" "$dir/sys" "$dir/newroot" "$dir/lib/modules"
cp "$root/bin/busybox" "$dir/bin/busybox"
# modprobe prints the insmod lines in dependency order; built-in modules print "builtin".
: >"$dir/modules.order"
# crc32c: ext4's metadata checksums (qemu64 has no SSE4.2, so the generic one); absent ones are skipped
for m in virtio_pci virtio_blk crc32c_generic ext4 9pnet_virtio 9p; do
  chroot "$root" modprobe --show-depends -S "$kver" "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}' || true
done | awk '!seen[$0]++' | while read -r ko; do
  base=$(basename "$ko")
  case $base in
    *.ko.xz) xz -dc "$root$ko" >"$dir/lib/modules/${base%.xz}"; base=${base%.xz} ;;
    *.ko.zst) zstd -dcq "$root$ko" >"$dir/lib/modules/${base%.zst}"; base=${base%.zst} ;;
    *) cp "$root$ko" "$dir/lib/modules/$base" ;;
  esac
  echo "$base" >>"$dir/modules.order"
done
cat >"$dir/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in $(/bin/busybox cat /modules.order); do /bin/busybox insmod /lib/modules/$m; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 500 ]; do /bin/busybox usleep 10000; i=$((i+1)); done
/bin/busybox mount -t ext4 -o rw,noatime /dev/vda /newroot || { echo "initrd: cannot mount /dev/vda"; exec /bin/busybox sh; }
/bin/busybox umount /proc /sys
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /sbin/init
INIT
chmod +x "$dir/init"
(cd "$dir" && find . | busybox cpio -o -H newc 2>/dev/null) >"$out"
