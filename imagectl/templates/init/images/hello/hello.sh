#!/bin/sh
cat /etc/motd
echo "hello from the platform family"
