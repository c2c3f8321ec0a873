// Package urootboot makes gokexec a u-root boot.OSImage, so a u-root
// bootloader (boot, localboot, its menu) boots through gokexec and the
// running kernel's IMA measurement list is handed over.
//
//	imgs, _ := bls.ScanBLSEntries(ulog.Null, "/boot", nil, "")
//	imgs = urootboot.Wrap(imgs, host, loader.Options{IMAExtra: 64 << 10})
//	_ = imgs[0].Load()     // load and finalize the hand-over
//	_ = boot.Execute()     // u-root's reboot into it
//
// Image wraps a *boot.LinuxImage (what u-root's parsers — BLS, GRUB,
// syslinux, localboot — produce): Load plans, appraises (when the options
// plug an appraiser in) and loads with package loader, then finalizes, so
// that u-root's boot.Execute, a bare reboot that knows nothing of IMA,
// boots a completed hand-over. Execute finalizes again (a finalize
// continues from the last one: what was measured since joins the list)
// and reboots; call it instead of boot.Execute when you can.
//
// Invariants: the image's inputs are read once, through their
// io.ReaderAts; nothing here touches the machine except through the
// loader.Host given.
//
// Dry runs: set Image.DryRun. u-root's boot.WithDryRun cannot be honoured:
// a boot.LoadOption is a func over u-root's unexported options type, and
// u-root v0.16.0's pkg/boot exports no way to read one (checked: boot.go
// has only the WithLogger, WithVerbose and WithDryRun constructors), so
// Load cannot tell which options it was given and ignores them all. In
// particular u-root's menu (menu.OSImageAction with NoKexecLoad) asks
// for a dry run through that option: an Image under such a menu loads for
// real unless its DryRun is set.
package urootboot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/u-root/u-root/pkg/boot"

	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/plan"
)

// Image is a boot.OSImage that boots its Linux image through gokexec.
type Image struct {
	Linux   *boot.LinuxImage
	Host    loader.Host
	Options loader.Options
	// DryRun: Load and Execute act on nothing (loader.DryRun); Acts says
	// what they would have done.
	DryRun bool
	Acts   []loader.Act

	host   loader.Host
	dry    *loader.DryRun
	loaded *loader.Loaded
	report *loader.Report
}

var _ boot.OSImage = (*Image)(nil)

// New wraps li.
func New(li *boot.LinuxImage, h loader.Host, o loader.Options) *Image {
	return &Image{Linux: li, Host: h, Options: o}
}

// Wrap wraps every *boot.LinuxImage of imgs, in order; other images (a
// multiboot kernel) are kept as they are.
func Wrap(imgs []boot.OSImage, h loader.Host, o loader.Options) []boot.OSImage {
	out := make([]boot.OSImage, len(imgs))
	for i, img := range imgs {
		if li, ok := img.(*boot.LinuxImage); ok {
			out[i] = New(li, h, o)
		} else {
			out[i] = img
		}
	}
	return out
}

// String describes the image for u-root's menus and logs.
func (i *Image) String() string { return "gokexec " + i.Linux.String() }

// Label is the Linux image's label.
func (i *Image) Label() string { return i.Linux.Label() }

// Rank is the Linux image's rank.
func (i *Image) Rank() int { return i.Linux.Rank() }

// Edit edits the command line (before Load).
func (i *Image) Edit(f func(string) string) { i.Linux.Edit(f) }

// ErrNoKernel: the Linux image has no kernel.
var ErrNoKernel = errors.New("the Linux image has no kernel")

// name is what an input is measured and appraised as: a file's name, or
// a description of the reader.
func name(what string, r any) string {
	if f, ok := r.(interface{ Name() string }); ok {
		return f.Name()
	}
	if s, ok := r.(fmt.Stringer); ok {
		return s.String()
	}
	return "u-root " + what
}

// image is the loader's Image of the Linux image.
func (i *Image) image() (loader.Image, error) {
	li := i.Linux
	if li.Kernel == nil {
		return loader.Image{}, ErrNoKernel
	}
	img := loader.Image{Cmdline: li.Cmdline, Kernel: loader.Input{Name: name("kernel", li.Kernel), R: li.Kernel}}
	if f, ok := li.Kernel.(*os.File); ok {
		img.Kernel.Path = f.Name()
	}
	if li.Initrd != nil {
		img.Initrd = loader.Input{Name: name("initrd", li.Initrd), R: li.Initrd}
		if f, ok := li.Initrd.(*os.File); ok {
			img.Initrd.Path = f.Name()
		}
	}
	if li.DTB != nil {
		img.DTB = loader.Input{Name: name("device tree", li.DTB), R: li.DTB}
	}
	return img, nil
}

// Load loads the image with the IMA hand-over and finalizes it, so that
// boot.Execute boots a completed hand-over. u-root's load options are
// ignored, boot.WithDryRun included (they cannot be read outside u-root;
// see the package doc): a dry run is Image.DryRun.
func (i *Image) Load(...boot.LoadOption) error {
	ctx := context.Background()
	img, err := i.image()
	if err != nil {
		return err
	}
	i.host = i.Host
	if i.DryRun {
		i.dry = loader.NewDryRun(i.Host)
		i.host = i.dry
	}
	o := i.Options
	if i.Linux.LoadSyscall && o.Mode == "" {
		o.Mode = plan.ModeLoad
	}
	l, err := loader.Load(ctx, i.host, img, o)
	if err != nil {
		return fmt.Errorf("gokexec: %w", err)
	}
	rep, err := l.Finalize(ctx)
	if err != nil {
		_ = l.Unload()
		i.record()
		return fmt.Errorf("gokexec: finalize: %w", err)
	}
	i.loaded, i.report = l, rep
	i.record()
	return nil
}

// Report is what the last finalize did (nil before Load).
func (i *Image) Report() *loader.Report { return i.report }

// Execute finalizes again (adding what was measured since Load) and
// reboots into the image; it returns only on failure.
func (i *Image) Execute() error {
	if i.loaded == nil {
		return fmt.Errorf("gokexec: %w", loader.ErrNothingLoaded)
	}
	rep, err := i.loaded.Finalize(context.Background())
	if err != nil {
		i.record()
		return fmt.Errorf("gokexec: finalize: %w", err)
	}
	i.report = rep
	err = i.loaded.Exec()
	i.record()
	return err
}

func (i *Image) record() {
	if i.dry != nil {
		i.Acts = append([]loader.Act(nil), i.dry.Acts...)
	}
}

// Describe is a one-line account of the last finalize.
func (i *Image) Describe() string {
	rep := i.report
	if rep == nil {
		return "not loaded"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d entries handed over", rep.Count)
	if rep.NoTPM {
		b.WriteString(", no TPM: none extended")
	} else if rep.Extended {
		fmt.Fprintf(&b, ", %d of the loader's extended into %s (%s)", len(rep.Entries), rep.TPM, strings.Join(rep.Banks, " "))
	}
	return b.String()
}
