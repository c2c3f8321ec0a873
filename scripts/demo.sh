#!/usr/bin/env bash
# The main job: boot Debian 6.1 under QEMU + swtpm, kexec into Debian 6.12
# with gokexec handing the IMA measurement list over, and check the second
# kernel's list against the TPM with imalog. Exit status: imalog verify's.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh demo
exec go run ./demo "$@"
