#!/bin/sh
# DON'T: the same entry point without `exec`. The shell stays PID 1 and the worker runs as
# its child. A PID 1 without a SIGTERM handler never receives SIGTERM (the kernel drops it),
# and the shell does not pass it on: the worker runs on until the SIGKILL at the end of the
# grace period. Shown on docs/frameworks/deploys-and-shutdowns.md; measured by the lab.
set -eu
echo "entrypoint: starting $1" >&2
"$@"
