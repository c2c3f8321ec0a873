// Package qemu is the test harness that boots real Debian kernels under
// QEMU (KVM when a probe guest shows it works, software emulation otherwise)
// with a swtpm TPM 2.0,
// runs a scenario inside the guest and brings the results back as
// machine-readable records. It runs host tools (qemu-system-*, swtpm,
// swtpm_setup, ldd, go) and is meant for tests; it never calls kexec_load,
// kexec_file_load or reboot on the host: those happen only inside guests,
// done by the guest agent (qemu/agent), which refuses to run unless it is
// PID 1.
//
// # Pieces
//
//   - Kernel(name) / TestKernels(): cached Debian kernels fetched by
//     scripts/setup.sh into $GOKEXEC_CACHE/kernels/NAME/{vmlinuz,config,package}
//     (names Deb61AMD64, Deb612AMD64, Deb61ARM64). GOKEXEC_TEST_KERNEL and
//     GOKEXEC_TEST_KERNEL2 override the first kernel and the kexec target
//     (a cache name or a path). KernelRelease(path) reads `uname -r` of a
//     bzImage from its setup header.
//   - StartTPM(ctx, dir, banks): swtpm_setup (fresh state, PCR banks, default
//     sha1,sha256,sha384) then `swtpm socket --tpm2 --ctrl type=unixio,...
//     --runas root`. No --flags startup-*: SeaBIOS (amd64) or the kernel
//     sends TPM2_Startup. TPM.Stop kills and waits. PCRs survive guest
//     kexecs within one Run; every Run is a cold boot (QEMU initialises the
//     TPM, PCRs reset). swtpm exits when QEMU shuts the TPM down; the next
//     Run restarts it on the same state, so one TPM serves many runs.
//   - BuildGuestBinaries(ctx, outDir, pkgs...): static, stripped, -trimpath
//     builds of main packages ("./qemu/agent" = AgentPackage, "./cmd/gokexec",
//     ...), cached per test process. BuildGuest takes a GOARCH.
//   - Initramfs: AddFile, AddBytes, AddSymlink, AddScenario,
//     AddHostBinary(hostPath, guestPath) (copies the ldd-reported libraries
//     and loader too, so Debian's /sbin/kexec runs), WriteTo (uncompressed
//     newc via u-root's pkg/cpio). /dev/console, /proc, /sys, /run, /tmp are
//     always present. AgentInitramfs(ctx, arch, dir, scenario) gives one with
//     the agent as /init and the scenario as /scenario.json.
//   - Run(ctx, VM{...}): one QEMU run, possibly several guest boots. amd64:
//     qemu-system-x86_64 -machine q35 -cpu max -m 1024 -smp 1 -display none
//     -no-reboot -kernel -initrd -append, ttyS0 = kernel console (stdout ->
//     serial log; -machine q35,accel=kvm -cpu host when KVM was chosen),
//     ttyS1 = protocol records only (a unix socket the host
//     listens on), so kernel messages cannot corrupt records. arm64: -machine
//     virt -cpu max,pauth-impdef=on (10x faster under TCG), records share ttyAMA0 with the console. The TPM is
//     attached as tpm-tis (amd64) or tpm-tis-device (arm64). Run returns
//     when QEMU exits (the agent powers off), at VM.Timeout (the process is
//     killed) or when ctx ends. The command line is DefaultAppend(arch), then
//     VM.Append, then gkt.step=VM.Step.
//
// # Debian guest image (systemd)
//
// BuildDebianImage(ctx, DebianOptions{Debs, Agent}) gives a bookworm root
// file system made by mmdebstrap --variant=apt (DebianPackages: systemd-sysv,
// udev, linux-image-cloud-amd64, kmod, initramfs-tools, zstd; no
// recommends, no docs; VT gettys masked, volatile journal, 10 s stop
// timeouts, default target multi-user), the given .debs installed with dpkg
// in a chroot, and the agent as gkt-agent.service (service mode: after
// multi-user.target, scenario from fw_cfg opt/gkt/scenario, step = boot
// number counted on the disk), written with mke2fs -d to a raw ext4 image.
// The image's own /boot/vmlinuz-* and initrd.img-* are copied out beside
// it. Two cache layers under CacheDir()/debian: base-<hash of suite,
// packages, mirror, builder version>/root and image-<hash of the base, the
// .debs' and the agent's bytes, builder version>/{root.img,vmlinuz,
// initrd.img}; a lock file serialises builds across test processes. Boot it
// with VM{Kernel: img.Kernel, Initrd: img.Initrd, Disk: <Overlay of
// img.Disk>, Append: DebianAppend, ExtraArgs: FwCfgArgs("scenario", file)}.
// VM.Reset lets a guest reboot reset the machine (and the TPM) inside the
// run instead of ending it. Observed under TCG: multi-user.target in about
// 40 s, a gokexec -l of the 14 MB kernel and 13 MB initrd about 25 s,
// systemctl kexec to the second system's multi-user.target about 60 s; in
// systemd-shutdown's late state / is read-only, /run (tmpfs), /dev, /sys
// with securityfs, /proc and /dev/tpm0 + /dev/tpmrm0 are still there, and
// with no /usr/sbin/kexec systemd 252 calls reboot(LINUX_REBOOT_CMD_KEXEC)
// itself.
//
// # Accelerator
//
// ChooseAccel decides once per process and guest architecture, and every
// Run uses its answer. GOKEXEC_QEMU_ACCEL=kvm or =tcg forces one; auto (the
// default) picks KVM only when /dev/kvm opens, the guest has the host's
// architecture, and a probe guest on KVM (the run's own kernel, no initrd)
// prints its banner and reaches its root-mount panic within 30 s. A /dev/kvm
// that opens is not enough: nested KVM may abort QEMU ("failed to set MSR"),
// stop the VM ("KVM internal error. Suberror: 1", "emulation failure") or
// leave the guest at its reset vector. The choice and its reason go to
// stderr once and head every serial log ("# accelerator: ...") and
// artifacts/accel.txt. A run on KVM watches QEMU's stderr for those words
// and QMP for a STOP event, and ends at once with ErrAccel; in auto mode it
// is run once more with software emulation (Result.AccelNote, the KVM
// console kept as serial-kvm.log) and the process stays on software
// emulation. VM.Timeout is written for software emulation; Accel.Scale
// shortens it on KVM.
//
// Errors: ErrTimeout, ErrAccel, ErrQEMU (QEMU failed or exited non-zero), ErrGuest (an
// "error" record, or the last record is not "done"), proto.ErrBadLine (a
// corrupt record), ErrMissingTool (names the Debian package to install;
// scripts/setup.sh installs them all, tests do not skip), ErrNoKernel. All
// are wrapped with %w and name the serial log. Run returns the partial
// *Result together with any error.
//
// # Protocol (package qemu/proto)
//
// The agent writes one line per record: "GKT " + JSON. A record longer than
// proto.MaxLine is gzipped, base64-encoded and split into "GKT {"part":...}"
// lines that the host reassembles (missing or duplicate parts are errors).
// Every record has step (gkt.step), type, action (index in the step, -1 when
// none) and mono_ns (guest CLOCK_MONOTONIC); the host sets boot, counting
// "boot" records (1 for the first kernel, 2 after the first kexec...).
// Result.Arrived[i] is the host time since QEMU started.
//
//	boot   release (uname -r), cmdline (/proc/cmdline); first record of a boot
//	pcrs   pcrs: bank -> 24 lowercase hex values, every bank in /sys/class/tpm/tpm0/pcr-*
//	list   name: binary_runtime_measurements | ascii_runtime_measurements; data: bytes
//	cmd    argv, exit, output (stdout+stderr)
//	file   name: guest path; data
//	error  error; the step stops, the agent powers off
//	done   the step ran to its end; the agent powers off
//	boot-info  release, cmdline again, for {"report": ["boot"]} (does not start a boot)
//
// # Scenario (proto.Scenario, /scenario.json)
//
// Steps by name; the agent runs the step named by gkt.step= with a watchdog
// (DeadlineSec, default 120 s) that reports an error and powers off. Actions
// (exactly one field each), in order:
//
//	{"policy": "rules\n..."}            one write of the whole IMA policy (IMA_WRITE_POLICY is off: once per boot)
//	{"measure_files": N, "dir": D, "owner": U}   create N small files in D (default /tmp/m), chown U:U, read each
//	{"violation": true, "dir": D, "owner": U}    open-writers violation: read a file while a writer holds it open
//	{"add_key": true}                   fresh self-signed RSA X.509 cert into a new keyring (KEY_CHECK -> ima-buf)
//	{"report": ["pcrs","list","ascii","boot"]}  in the given order (read PCRs before the list)
//	{"run": ["/sbin/kexec", ...], "expect_exit": 0}   "cmd" record; a different exit stops the step
//	{"file": "/path"}                   "file" record
//	{"write_file": "/path", "data": base64}
//	{"repack_initrd": "/run/next.cpio"} newc of the running rootfs (without the contents of /proc /sys /dev /run /tmp)
//	{"exec": ["/sbin/kexec", "-e"]}     must not return; if it does: "cmd" then "error"
//
// A kexec chain passes DefaultAppend("amd64") + " gkt.step=NEXT" to the
// next kernel and the repacked initramfs, which holds the same agent and
// scenario.
//
// arm64 (Deb61ARM64): Debian builds tpm_tis as a module and the cache holds
// no modules, so an arm64 guest sees no TPM even with VM.TPM set; its
// kernel has no KEXEC_FILE, hence no IMA restore: read /sys/firmware/fdt
// with a {"file": ...} action instead (TestBootARM64 does). The arm64 test
// kernels RestoreARM64 and IMAKexecARM64 (scripts/build-kernel-arm64.sh;
// KernelFile gives their vmlinuz.efi, Image.gz and vmlinux) have the TPM
// driver built in and restore lists. VM.Firmware uefi on arm64 boots
// AAVMF (AAVMFCode, a per-run copy of AAVMFVars): the kernel then starts
// through its EFI stub and runs on ACPI.
//
// Tests that boot QEMU skip under go test -short (the fast unit run) and
// never because a tool is missing.
//
// # Artifacts
//
// ArtifactsDir(t) is $GOKEXEC_ARTIFACTS/<test name with / -> _> (default
// <repo>/build/artifacts), fresh per test. With VM.ArtifactsDir set, Run
// writes there: serial.log (kernel console of all boots, the QEMU command
// line first, QEMU's stderr and exit last), protocol.log (raw record lines),
// records.jsonl ({"arrived_ms":..,"record":{..}} per line), and per boot
// boot-N/info.txt, boot-N/pcr-<bank>.txt (evmctl --pcrs format: 24 lines
// "PCR-NN: XX XX ..."), boot-N/binary_runtime_measurements,
// boot-N/ascii_runtime_measurements, boot-N/file-<path>, boot-N/cmd-<prog>.txt;
// a second report of the same kind in one boot gets ".2", ".3"...
//
// # Golden captures
//
// TestCaptureGolden (GOKEXEC_CAPTURE=1; GOKEXEC_CAPTURE_DIR and
// GOKEXEC_CAPTURE_VARIANT for trial runs) writes
// ima/testdata/captures/<Debian kernel package>/ for deb61-amd64 and
// deb612-amd64: the main capture (ima-ng, ima-sig, ima-ngv2, ima-buf from
// KEY_CHECK, PCR 11, violations), templates/ (ima-sigv2, ima-modsig,
// evm-sig, legacy ima) and large/ (3512 entries). Each holds both lists,
// pcr-<bank>.txt (PCRs read just before the lists) and pcr-<bank>-prefix.txt
// (read earlier: a strict prefix) for sha1, sha256, sha384, and info.txt
// (versions, policy, scenario, evmctl and harness replay results).
// TestCapturesReplay checks every committed capture on each run.
//
// # Example: a scenario test (integration/)
//
//	func TestSoftReboot(t *testing.T) {
//		ctx := context.Background()
//		art := qemu.ArtifactsDir(t)
//		k1, k2, err := qemu.TestKernels()
//		if err != nil { t.Fatal(err) }
//		bins, err := qemu.BuildGuestBinaries(ctx, filepath.Join(art, "bin"), "./cmd/gokexec")
//		if err != nil { t.Fatal(err) }
//		next := qemu.DefaultAppend("amd64") + " gkt.step=2"
//		sc := &proto.Scenario{Steps: map[string]proto.Step{
//			"1": {Actions: []proto.Action{
//				{Policy: qemu.BasePolicy},
//				{MeasureFiles: 10},
//				{RepackInitrd: "/run/next.cpio"},
//				{Run: []string{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio",
//					"--append", next}, ExpectExit: new(int)},
//				{Exec: []string{"/bin/gokexec", "-e"}},
//			}},
//			"2": {Actions: []proto.Action{{Report: []string{"pcrs", "list"}}}},
//		}}
//		ir, err := qemu.AgentInitramfs(ctx, "amd64", filepath.Join(art, "bin"), sc)
//		if err != nil { t.Fatal(err) }
//		ir.AddFile("/bin/gokexec", bins["./cmd/gokexec"])
//		ir.AddFile("/boot/vmlinuz-2", k2)
//		initrd := filepath.Join(art, "initrd.cpio")
//		if err := ir.WriteTo(initrd); err != nil { t.Fatal(err) }
//		tpm, err := qemu.StartTPM(ctx, filepath.Join(art, "tpm"), nil)
//		if err != nil { t.Fatal(err) }
//		defer tpm.Stop()
//		res, err := qemu.Run(ctx, qemu.VM{Kernel: k1, Initrd: initrd, Step: "1", TPM: tpm, ArtifactsDir: art})
//		if err != nil { t.Fatal(err) }
//		list, pcrs := res.List(2, "binary_runtime_measurements"), res.PCRs(2)
//		// ... verify list against pcrs["sha256"] with package ima
//	}
//
// TestKexecChainKexecTools in this package is the same with Debian's
// kexec-tools and is the harness's self-test.
//
// # Observed facts (Debian 6.1.0-56 and 6.12.117 cloud-amd64, QEMU 7.2 TCG, swtpm 0.7.1)
//
//   - A boot to the agent takes 2-3 s with a small initramfs, about 9 s with
//     a 30 MB one (two kernels + kexec-tools); a full boot+kexec+boot run
//     about 22 s. Times grow when the host is busy; use generous timeouts.
//   - Reading sysfs files as root under a uid=0 FILE_CHECK rule yields
//     entries with an all-zero file digest; exclude proc (0x9fa0), sysfs
//     (0x62656572), securityfs (0x73636673) with dont_measure rules.
//   - An open-writers violation appears as an entry with an all-zero
//     template digest in PCR 10 using the default template (ima-sig), even
//     when the matching rule sets pcr= and template=; the read itself is then
//     measured normally under the rule.
//   - Both kernels accept template=ima-ngv2, ima-sigv2, ima-modsig, evm-sig
//     and ima in policy rules. evmctl 1.4 (bookworm) cannot read sha384 PCR
//     files and rejects lists mixing "ima" with other templates.
//   - Debian 6.1 builds sha384 (CONFIG_CRYPTO_SHA512) as a module, so IMA
//     has no sha384 hash at init: it extends the sha384 bank with the SHA-1
//     template digest zero-padded to 48 bytes, but violations with 48 0xff
//     bytes (its preset digest of the bank's full size). 6.12 (built-in)
//     uses sha384 itself. Seen in both captures on every run; the harness
//     tests replay all three banks (TestCapturesReplay).
//   - After kexec-tools' kexec_load + kexec -e, the TPM keeps every PCR
//     (PCR 10 continues from the value at exec) while the new kernel's list
//     holds only its own boot_aggregate.
//
// Invariants: nothing in this package calls kexec or reboot on the host;
// every Run leaves its serial log; ArtifactsDir is fresh per test; errors
// wrap the sentinels above; the agent and the host share one protocol
// definition (qemu/proto).
package qemu
