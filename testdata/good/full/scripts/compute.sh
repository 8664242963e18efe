#!/bin/sh
set -eu
echo compute >> /etc/motd
