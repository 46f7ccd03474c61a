#!/usr/bin/env bash
# What each guarantee of a `limit` permit costs, measured: exports of a revision with one
# guarantee taken out of the permit's fast-path Lua, run by bench/permit-costs.ts beside the
# unmodified checkout and redis-semaphore's `Semaphore`. A diagnostic behind bench/NOTES.md
# section 13 ("What the permit's guarantees cost"), never a product configuration:
#   nofence   the token is Redis' clock alone (no GET + SET of the fence key)
#   norecord  no holder record (no HSET on grant, no HDEL on release)
#   noqueue   no FIFO check (no LLEN on grant or release)
#   lean      all three out
#
#   bash bench/permit-ablations.sh [revision=HEAD]
set -euo pipefail
cd "$(dirname "$0")/.."
revision="${1:-HEAD}"
scripts=lib/backends/redis/holder-set.scripts.ts
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

nofence() {
  perl -0pi -e 's/\$\{mintFenceLua\(keys\.fence, .lease_ms., .clock.\)\}/local fence = (clock[1] - 1735689600) * 100000 + math.floor(clock[2] \/ 10)\n  local fence_text = string.format(\x27%.0f\x27, fence)/' "$1/$scripts"
}
norecord() {
  perl -0pi -e 's/\n  redis\.call\(.HSET., \$\{keys\.holders\}, token, ttl[^\n]*//; s/(local released = redis\.call\(.ZREM., KEYS\[7\], token\)\n)  redis\.call\(.HDEL., KEYS\[6\], token\)\n/$1/' "$1/$scripts"
}
noqueue() {
  perl -0pi -e 's/\n  if redis\.call\(.LLEN., KEYS\[3\]\) > 0 then return false end//; s/ and redis\.call\(.LLEN., KEYS\[4\]\) == 0 then\n  \$\{NOW\}/ then\n  \${NOW}/' "$1/$scripts"
}

export_variant() {
  local name="$1" expected="$2"
  shift 2
  mkdir "$work/$name"
  git archive "$revision" | tar -x -C "$work/$name"
  ln -s "$PWD/node_modules" "$work/$name/node_modules"
  for edit in "$@"; do "$edit" "$work/$name"; done
  # An edit that no longer matches the Lua would measure the unmodified scripts: refuse.
  local changed
  changed="$(git show "$revision:$scripts" | diff - "$work/$name/$scripts" | grep -c '^[<>]' || true)"
  if [ "$changed" != "$expected" ]; then
    echo "permit-ablations: variant $name changed $changed lines of $scripts, expected $expected (has the Lua moved?)" >&2
    exit 1
  fi
}

export_variant nofence 3 nofence
export_variant norecord 2 norecord
export_variant noqueue 3 noqueue
export_variant lean 8 nofence norecord noqueue
node -r ts-node/register/transpile-only bench/permit-costs.ts "$work/nofence" "$work/norecord" "$work/noqueue" "$work/lean"
