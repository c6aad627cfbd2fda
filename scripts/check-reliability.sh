#!/usr/bin/env bash
# docs/reliability.md names the test that proves each promise: every `suite::name` must
# be a test function in t/suite.rs, every `lib: path::name` one in src/, so the page
# cannot outlive a renamed or removed test. Run by `make lint`.
set -euo pipefail
cd "$(dirname "$0")/.."
page=docs/reliability.md
missing=0
# shellcheck disable=SC2016 # backquotes in the pattern, not an expansion
while IFS=: read -r suite _ name; do
  [ -f "t/$suite.rs" ] || continue
  grep -q "fn $name\b" "t/$suite.rs" || { echo "$page: no test $name in t/$suite.rs" >&2; missing=1; }
done < <(grep -o '`[a-z_]*::[a-z_0-9]*`' "$page" | tr -d '`' | sort -u)
while read -r path; do
  grep -rq "fn ${path##*::}\b" src || { echo "$page: no unit test $path in src/" >&2; missing=1; }
done < <(grep -o 'lib: [a-z_:0-9]*' "$page" | sed 's/^lib: //' | sort -u)
exit "$missing"
