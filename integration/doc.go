// Package integration holds gokexec's end-to-end scenarios: real Debian
// kernels booted under QEMU with a swtpm TPM, gokexec (and, for contrast,
// kexec-tools) run inside the guest, and the handed-over IMA lists checked
// against the TPM's PCRs with package ima and with evmctl.
//
// Invariants: every kexec_load, kexec_file_load and reboot happens inside a
// QEMU guest; nothing here makes those calls on the host. Each scenario
// leaves its artifacts (serial log, each boot's lists and PCR values) under
// $GOKEXEC_ARTIFACTS/<test name>. `go test -short` skips the scenarios and
// runs the unit tests of the checks themselves.
//
// The result of a scenario is what the host verifies, never a guest's own
// verdict (a guest's imalog output may be compared, not trusted). Every
// gokexec hand-over scenario ends in one check (hopcheck_test.go), written
// independently of the producer (its own list splitter, crypto/sha1,
// sha256 and sha512 over template data, its own marker pattern):
//
//   - requireHandover(t, res, extra): guests whose PCRs and list are read
//     with nothing measured in between (the busybox agent). Every boot's
//     last reported list is a byte prefix of the next boot's; each replays
//     in full to that boot's last PCR report, with one method (bank hash or
//     SHA-1 padded) per bank per kernel release; between each pair of
//     boot_aggregate entries exactly one kexec_load then one kexec_execute
//     whose payload says the entries before it, their bytes plus the
//     24-byte hand-over header, and one page-aligned segment size that
//     holds the buffer; then evmctl judges the same (last) report and must
//     say it matched the whole list (evmctlAgrees).
//   - requireHandoverPerBank(t, res, extra): the same for guests that keep
//     measuring while sysfs PCR files are read bank by bank (systemd): each
//     bank must match a prefix reaching past the last boot_aggregate; where
//     it ends is logged.
//   - hopCheck / hopCheckPerBank over bootReports(res, first, last): the
//     same checks for a scenario whose boots are numbered otherwise.
//
// checkChain (the chain scenarios, UEFI and BigGuest included) calls
// requireHandover. Each check has unit tests that feed it the faults it
// exists for (TestHopCheck*, TestEvmctl*).
package integration
