/**
 * `base build NAME --busybox`: a builder script (BuildSpec.script, run by the
 * agent on its host with the target directory as $1) that makes a tiny root
 * filesystem from the host's static busybox, the same tree as the tests'
 * fixture (test/fixtures/rootfs.ts). Seconds instead of debootstrap's minutes:
 * the quick start uses it.
 */
export const BUSYBOX_BUILDER = `#!/bin/sh
# protoctl built-in builder: a root filesystem from the host's static busybox.
set -eu
root="$1"
bb=/bin/busybox
if [ ! -x "$bb" ]; then
  echo "no $bb on this node: apt-get install busybox-static" >&2
  exit 1
fi
if ldd "$bb" >/dev/null 2>&1; then
  echo "$bb is dynamically linked: apt-get install busybox-static" >&2
  exit 1
fi
for d in bin sbin etc proc sys dev tmp root var/log run usr/bin usr/sbin; do mkdir -p "$root/$d"; done
cp "$bb" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
for a in $("$bb" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
echo busybox > "$root/etc/hostname"
printf 'ID=busybox\\nNAME="BusyBox"\\n' > "$root/etc/os-release"
chmod 1777 "$root/tmp"
echo "busybox root filesystem ready"
`;
