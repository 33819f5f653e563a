#!/usr/bin/env bash
# Runs the README's two walk-throughs as a reader would and checks their outputs. Each section
# between `<!-- NAME:start -->` and `<!-- NAME:end -->` runs in one shell, so `export`, `&` and
# `$!` carry from one step to the next as in a terminal: every `sh` block in order, and every line
# of the `text` block after one must appear in what that block printed. Request ids and other
# 32-hex values compare as <hex32>, timestamps as <time>, metric counts and the access line's
# bytes and durations as <n>.
# - `tour` runs from the checkout against a fresh demo (it reads certs/dev/ca.crt); its
#   `demo-output` block is checked against the demo's own stderr.
# - `own-api` runs in an empty folder with the binary on the PATH, so nothing in it may lean on
#   the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

for tool in curl python3 openssl setsid timeout; do
  command -v "$tool" > /dev/null || { echo "README test: needs $tool on the PATH" >&2; exit 1; }
done
cargo build --locked --quiet
work=$(mktemp -d)
cleanup() {
  kill "${demo:-}" 2>/dev/null || true
  # Whatever a section left running (its shell leads a session of its own).
  for group in "$work"/*.pgid; do
    [ -e "$group" ] && kill -- "-$(cat "$group")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

normalise() {
  sed -E 's/[0-9a-f]{32}/<hex32>/g
    s/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}(\.[0-9]+)?Z/<time>/g
    s/"(bytes|duration_ms)":[0-9.]+/"\1":<n>/g
    s/^(gateway_[a-z_]+(\{[^}]*\})?) [0-9.e+]+$/\1 <n>/'
}

failed=0
# run_section NAME DIR: runs the README's section NAME in DIR and compares each block's output.
run_section() {
  local name=$1 dir=$2 md="$work/$1.md"
  awk -v s="<!-- $name:start -->" -v e="<!-- $name:end -->" '$0 == s {on = 1; next} $0 == e {on = 0} on' \
    README.md > "$md"
  # One script of every `sh` block, each behind a marker line that splits the output again.
  {
    echo "echo \$\$ > '$work/$name.pgid'"
    awk '/^```sh$/ {n++; print "sleep 0.5; printf \"\\n@@block " n "@@\\n\""; on = 1; next}
         /^```$/ && on {on = 0; next}
         on' "$md"
  } > "$work/$name.sh"
  local blocks
  blocks=$(grep -c '^```sh$' "$md" || true)
  [ "$blocks" -ge 6 ] || { echo "README $name: only $blocks commands found" >&2; failed=1; return; }
  (cd "$dir" && PATH="$repo/target/debug:$PATH" timeout 300 setsid -w bash "$work/$name.sh" \
    > "$work/$name.out" 2>&1 || true)
  awk -v d="$work/$name.got." '/^@@block [0-9]+@@$/ {gsub(/@@(block )?/, ""); f = d $0; printf "" > f; next}
       f {print > f}' "$work/$name.out"

  # Each `text` block against the output of the `sh` block before it (or the demo's stderr).
  local n=0 mode="" kind="" line actual what want
  while IFS= read -r line; do
    case "$line" in
      '<!-- demo-output -->') kind=demo ;;
      '```sh') mode=sh; n=$((n + 1)) ;;
      '```text') mode=text; : > "$work/expected" ;;
      '```')
        if [ "$mode" = text ]; then
          if [ "$kind" = demo ]; then actual="$work/demo.err"; what="the demo's output"; kind=""
          else actual="$work/$name.got.$n"; what="block $n"; fi
          [ -e "$actual" ] || : > "$actual"
          normalise < "$actual" > "$work/actual.norm"
          while IFS= read -r want; do
            want=$(printf '%s\n' "$want" | normalise)
            if ! grep -qxF -- "$want" "$work/actual.norm"; then
              echo "README $name: $what did not print: $want" >&2
              echo "--- it printed:" >&2; cat "$actual" >&2
              failed=1
            fi
          done < "$work/expected"
        fi
        mode="" ;;
      *) if [ "$mode" = text ]; then printf '%s\n' "$line" >> "$work/expected"; fi ;;
    esac
  done < "$md"
  echo "README $name: $blocks steps run"
}

# The tour: a fresh store, so counts and the inbox are its own: the demo's config, data elsewhere.
mkdir -p "$work/config"
cp -r config/rules config/dev.env "$work/config/"
sed 's|^path = "../data/gateway.db"|path = "'"$work"'/gateway.db"|; s|"../certs/dev/|"'"$PWD"'/certs/dev/|g' \
  config/gateway.toml > "$work/config/gateway.toml"
target/debug/recipient-gateway demo --config "$work/config/gateway.toml" > "$work/demo.out" 2> "$work/demo.err" &
demo=$!
for _ in $(seq 50); do grep -q "Ctrl-C stops the demo" "$work/demo.err" && break; sleep 0.1; done
grep -q "Ctrl-C stops the demo" "$work/demo.err" || { cat "$work/demo.err" >&2; exit 1; }
run_section tour "$repo"

# In front of your own API: an empty folder, outside the checkout.
mkdir -p "$work/own-api"
run_section own-api "$work/own-api"

[ "$failed" = 0 ] || exit 1
echo "README: every step printed what the README shows"
