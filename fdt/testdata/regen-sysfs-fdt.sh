#!/bin/sh
# Produces linux-6.1-arm64-sysfs-fdt-qemu-virt.dtb.gz: the /sys/firmware/fdt
# that Debian's 6.1 arm64 kernel exports after booting on QEMU's virt
# machine (the kernel has NOPed /chosen/rng-seed and zeroed kaslr-seed in
# it). Boots the kernel fetched by scripts/setup.sh under qemu-system-aarch64
# with a one-file initramfs (sysfsdump/main.go as /init).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kernel=${GOKEXEC_CACHE:-$root/build/cache}/kernels/deb61-arm64/vmlinuz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/root"
(cd "$here/sysfsdump" && CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -o "$tmp/root/init" .)
(cd "$tmp/root" && echo init | cpio -o -H newc --quiet | gzip -n >"$tmp/initrd.gz")
timeout 300 qemu-system-aarch64 -machine virt -cpu cortex-a57 -m 1024 -nographic -no-reboot \
	-kernel "$kernel" -initrd "$tmp/initrd.gz" -append "console=ttyAMA0 panic=-1 quiet" >"$tmp/serial.log" 2>&1 || true
sed -n '/^FDT-BEGIN/,/^FDT-END/p' "$tmp/serial.log" | tr -d '\r' | sed '1d;$d' | base64 -d >"$tmp/fdt.gz"
gzip -dc "$tmp/fdt.gz" | gzip -9 -n >"$here/linux-6.1-arm64-sysfs-fdt-qemu-virt.dtb.gz"
echo "wrote $here/linux-6.1-arm64-sysfs-fdt-qemu-virt.dtb.gz ($(cat "$root/build/cache/kernels/deb61-arm64/package"))"
