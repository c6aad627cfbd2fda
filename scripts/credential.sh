#!/usr/bin/env bash
# credential.sh basic|bearer NAME: prints a line for a prometheus_auth_file, reading the
# password (basic) or token (bearer) from standard input: typed twice without echo at a
# terminal, else the first line of what is piped in. Only a salted SHA-256 digest is
# printed, never the secret:
#
#   scripts/credential.sh basic prometheus >> /etc/nginx/metrics.credentials
#   printf '%s' "$TOKEN" | scripts/credential.sh bearer ci >> /etc/nginx/metrics.credentials
set -euo pipefail
die() { echo "credential.sh: $*" >&2; exit 2; }
[ $# -eq 2 ] || die "usage: credential.sh basic|bearer NAME (the secret on standard input)"
kind=$1 name=$2
case "$kind" in basic|bearer) ;; *) die "kind must be basic or bearer, not \"$kind\"" ;; esac
[[ -n "$name" && "$name" != *[[:space:]]* ]] || die "the name must be one word"
[[ "$kind" != basic || "$name" != *:* ]] || die "a Basic user name cannot contain ':'"

if [ -t 0 ]; then
  read -rsp "$kind secret for $name: " secret; echo >&2
  read -rsp "again: " again; echo >&2
  [ "$secret" = "$again" ] || die "the two entries differ"
else
  IFS= read -r secret || true   # a last line without a newline is still read
fi
[ -n "$secret" ] || die "empty secret"

# 8 random bytes of salt, as hex: two lines with the same secret never look alike.
salt=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
digest=$(printf '%s%s' "$salt" "$secret" | sha256sum | cut -d' ' -f1)
printf '%s %s sha256:%s:%s\n' "$kind" "$name" "$salt" "$digest"
