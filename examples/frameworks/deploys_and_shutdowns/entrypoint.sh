#!/bin/sh
# A container entry point that does some setup, then runs the worker command it was given
# (the image's CMD, or the pod's args). Shown on docs/frameworks/deploys-and-shutdowns.md;
# the shutdown lab (labs/shutdown_lab.py) starts every framework's worker through it.
set -eu
# One-time setup goes here: render a config file, wait for a secret, print the version.
echo "entrypoint: starting $1" >&2
# `exec` replaces the shell with the worker: the worker becomes PID 1 and receives the
# SIGTERM the runtime sends on every rollout.
exec "$@"
