package qemu

// PseudoFSPolicy is the start of every IMA policy the scenarios write: it
// excludes proc (0x9fa0), sysfs (0x62656572), securityfs (0x73636673),
// debugfs (0x64626720) and devpts (0x1cd1), so that the agent reading PCRs,
// lists and system files measures nothing and a list read after a PCR
// quote is that quote's list plus the test's own measurements. Rules match
// in order: append the measure rules after it.
const PseudoFSPolicy = `dont_measure fsmagic=0x9fa0
dont_measure fsmagic=0x62656572
dont_measure fsmagic=0x73636673
dont_measure fsmagic=0x64626720
dont_measure fsmagic=0x1cd1
`

// BasePolicy measures every file root reads (the kernel's default
// template and PCR), except on the pseudo file systems.
const BasePolicy = PseudoFSPolicy + "measure func=FILE_CHECK mask=MAY_READ uid=0\n"
