// Package integration holds gokexec's end-to-end scenarios: real Debian
// kernels booted under QEMU with a swtpm TPM, gokexec (and, for contrast,
// kexec-tools) run inside the guest, and the handed-over IMA lists checked
// against the TPM's PCRs with package ima and with evmctl.
//
// Invariants: every kexec_load, kexec_file_load and reboot happens inside a
// QEMU guest; nothing here makes those calls on the host. Each scenario
// leaves its artifacts (serial log, each boot's lists and PCR values) under
// $GOKEXEC_ARTIFACTS/<test name>. `go test -short` skips the scenarios.
package integration
