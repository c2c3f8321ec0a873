// Package packaging holds the Debian packaging of gokexec and the test that
// builds the package, and the checks of what a new user meets: the man
// pages and README against --help, the README's layout, scripts/setup.sh's
// Go check. scripts/package.sh turns this directory into
// build/package/gokexec_VERSION_ARCH.deb with dpkg-deb:
//
//	/usr/sbin/gokexec, /usr/bin/imalog          static binaries (CGO_ENABLED=0, -trimpath)
//	/usr/lib/systemd/system-shutdown/gokexec    files/shutdown-hook: finalize at systemctl kexec
//	/usr/lib/systemd/system/gokexec-load.service  files/gokexec-load.service (disabled unless enabled)
//	/usr/libexec/gokexec/load                   files/load: gokexec -l from /etc/default/gokexec
//	/etc/default/gokexec                        files/default (a conffile)
//	/usr/share/man/man8/gokexec.8.gz, man1/imalog.1.gz   rendered by genman from --help
//	/usr/share/doc/gokexec/{copyright,changelog.gz}
//
// Invariants: the package is reproducible from the source tree (file times
// come from SOURCE_DATE_EPOCH, owners are root), so its bytes key the guest
// image cache; the shutdown hook does nothing unless systemd-shutdown's verb
// is kexec and a gokexec load is recorded; nothing here is installed on the
// machine that builds it — install tests run in a chroot or a QEMU guest.
package packaging
