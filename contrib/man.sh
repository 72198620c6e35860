#!/bin/sh
# contrib/man.sh HELP2MAN KSHIMD OUT: kshimd(1) from `kshimd --help`
# (help2man), with contrib/kshimd.h2m's extra sections. The version line is
# kshim's, with the etcd version it stands in for (`kshimd --version`
# prints etcd's lines).
set -eu
help2man=$1 kshimd=$2 out=$3
dir=$(dirname "$0")
kshim=$("$kshimd" --version | sed -n 's/^Git SHA: kshim-//p')
etcd=$("$kshimd" --version | sed -n 's/^etcd Version: //p')
exec "$help2man" --no-info --no-discard-stderr --section=1 --source=kshim \
    --name="drop-in replacement for the etcd v3 server" \
    --version-string="kshimd $kshim (etcd $etcd)" \
    --include="$dir/kshimd.h2m" --output="$out" "$kshimd"
