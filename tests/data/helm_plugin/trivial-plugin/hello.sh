#!/bin/sh
echo "hello from the trivial plugin: $*"
