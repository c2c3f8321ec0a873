package main

import "golang.org/x/sys/unix"

// syncAll syncs file systems before -e reboots (a seam for tests).
var syncAll = unix.Sync
