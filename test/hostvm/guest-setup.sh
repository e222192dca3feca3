#!/bin/bash
# Runs inside the image's chroot at build time: makes it a quick-booting test
# host. The checks themselves come from the project share at boot
# (test/hostvm/guest/), so changing them does not rebuild the image.
set -euo pipefail
echo hostvm >/etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 hostvm\n' >/etc/hosts
cat >/etc/fstab <<'FSTAB'
/dev/vda / ext4 rw,noatime 0 1
project /project 9p trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro,nofail 0 0
results /results 9p trans=virtio,version=9p2000.L,msize=512000,rw,nofail 0 0
tmpfs /tmp tmpfs rw,nosuid,nodev,size=512m 0 0
FSTAB
mkdir -p /project /results
ln -sf /usr/local/bin/node /usr/bin/node

# The unit that runs the checks once the system is up, then powers off. Delegate=yes: the
# agent gets this unit's cgroup subtree, as under deploy/systemd's unit.
cat >/etc/systemd/system/protoctl-hostvm.service <<'UNIT'
[Unit]
Description=protoctl host VM checks
After=local-fs.target systemd-modules-load.service
RequiresMountsFor=/project /results
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
Delegate=yes
ExecStart=/bin/bash /project/test/hostvm/guest/run-checks.sh /results
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=20min

[Install]
WantedBy=multi-user.target
UNIT
systemctl enable protoctl-hostvm.service

# What a throwaway test host does not need; the serial getty would swallow ttyS0.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
  man-db.timer dpkg-db-backup.timer systemd-tmpfiles-clean.timer logrotate.timer \
  serial-getty@ttyS0.service getty@tty1.service systemd-timesyncd.service etcd.service \
  systemd-networkd-wait-online.service systemd-update-utmp.service systemd-update-utmp-runlevel.service \
  systemd-journal-flush.service ldconfig.service; do
  systemctl mask "$u" >/dev/null 2>&1 || true
done
systemctl set-default multi-user.target
# No password prompts, nothing to log into: the VM only runs the checks.
passwd -d root >/dev/null
