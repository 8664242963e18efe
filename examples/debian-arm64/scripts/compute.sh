#!/bin/sh
# Runs in the arm64 image root, emulated on an x86_64 machine.
set -e
echo "customized on $(uname -m)" > /etc/imsbuild-customized
