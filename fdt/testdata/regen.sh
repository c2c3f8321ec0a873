#!/bin/sh
# Regenerates the golden blobs in this directory from their real producers.
# Names say who produced each blob: dtc-* come from dtc (Debian
# device-tree-compiler 1.6.1) compiling the .dts files here with the options
# in the name; qemu-virt-cortex-a57.dtb.gz is QEMU 7.2 (Debian bookworm)
# dumping its own arm64 virt machine tree, gzipped to keep the 1 MiB of
# libfdt free space out of git. linux-6.1-arm64-sysfs-fdt-qemu-virt.dtb.gz
# is the kernel's /sys/firmware/fdt; regen-sysfs-fdt.sh makes it.
# linux-6.1.192-build-*.dtb are copied from Debian's
# linux-image-6.1.0-56-arm64 package (usr/lib/linux-image-*/{arm,broadcom}/),
# built by the kernel's own dtc; all 577 DTBs of that package round-trip
# byte for byte.
set -eu
cd "$(dirname "$0")"
for f in board uefi-nomem cells32; do dtc -q -I dts -O dtb -o dtc-$f.dtb $f.dts; done
dtc -q -I dts -O dtb -p 4096 -o dtc-board-p4096.dtb board.dts
dtc -q -I dts -O dtb -R 3 -S 8192 -b 1 -o dtc-board-R3-S8192-b1.dtb board.dts
dtc -q -I dts -O dtb -H both -@ -o dtc-board-Hboth-symbols.dtb board.dts
qemu-system-aarch64 -machine virt,dumpdtb=qemu-virt-cortex-a57.dtb -cpu cortex-a57 -m 1024 -nographic
gzip -9 -n -f qemu-virt-cortex-a57.dtb
