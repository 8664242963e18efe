#!/bin/sh
# Runs inside the image (jailed): the image root is /, network is off.
set -e
mkdir -p /etc/imsbuild
echo "customized by imsbuild" > /etc/imsbuild/role
adduser -D -H -s /bin/sh hpcuser 2>/dev/null || echo "hpcuser:x:1000:1000::/home/hpcuser:/bin/sh" >> /etc/passwd
ls -l /etc/motd
