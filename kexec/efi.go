package kexec

import (
	"github.com/gokexec/gokexec/efi"
)

// RootFS is the root of the running system's description. A captured host
// tree (gokexec capture-host) is read the same way from its own root.
const RootFS = "/"

// ReadFirmware reads the firmware description the planner hands to the
// next x86 kernel — /sys/kernel/boot_params/data and /sys/firmware/efi/** —
// from the tree at root ("/" for the running system, or a captured host).
// It returns nil, nil when the tree has neither.
func ReadFirmware(root string) (*efi.Host, error) { return firmwareIn(sysFiles{root}) }

func firmwareIn(fl files) (*efi.Host, error) { return efi.ReadHost(fl.fsys(MaxSmallBytes)) }
