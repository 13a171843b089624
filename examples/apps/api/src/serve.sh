#!/bin/sh
# serve the orders API
exec python3 -m orders --port 8080
