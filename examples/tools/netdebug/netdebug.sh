#!/bin/sh
# print what an on-call engineer asks first
hostname; cat /etc/resolv.conf 2>/dev/null; ip addr 2>/dev/null || true
