#!/bin/sh
# Runs jailed in the compute image (the image root is /), network off.
set -eu
echo compute > /etc/hostname
cat > /etc/issue <<'ISSUE'
imsbuild compute node \n \l
ISSUE
