#!/usr/bin/env bash
# Runs the README's two walk-throughs as a reader would and checks their outputs. Each section
# between `<!-- NAME:start -->` and `<!-- NAME:end -->` runs in one shell, so `export`, `&` and
# `$!` carry from one step to the next as in a terminal: every `sh` block in order. Each block
# must end with status 0, and print the lines of the `text` block after it, no others, each as
# often (in any order). Request ids and other 32-hex values compare as <hex32>, timestamps as
# <time>, metric counts and the access line's bytes and durations as <n>. A section gets 300 s,
# and whatever it started is killed when it ends.
# - `tour` runs from the checkout against a fresh demo (it reads certs/dev/ca.crt); its
#   `demo-output` block is checked against the demo's own stderr.
# - `own-api` runs in an empty folder with the binary on the PATH, so nothing in it may lean on
#   the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

for tool in curl python3 openssl sha256sum sed awk setsid timeout; do
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
  # One script of every `sh` block, each behind a marker line that splits the output again and
  # followed by its exit status. The half-second before each block stands in for a reader moving
  # to the next command (the tour's webhook is delivered in that time, as it is for a reader).
  {
    echo "echo \$\$ > '$work/$name.pgid'"
    awk '/^```sh$/ {n++; print "sleep 0.5; printf \"\\n@@block " n "@@\\n\""; on = 1; next}
         /^```$/ && on {on = 0; print "printf \"\\n@@status %d@@\\n\" \"$?\""; next}
         on' "$md"
  } > "$work/$name.sh"
  local blocks status=0
  blocks=$(grep -c '^```sh$' "$md" || true)
  [ "$blocks" -ge 6 ] || { echo "README $name: only $blocks commands found" >&2; failed=1; return; }
  (cd "$dir" && PATH="$repo/target/debug:$PATH" timeout 300 setsid -w bash "$work/$name.sh" \
    > "$work/$name.out" 2>&1) || status=$?
  # Whatever the section left running (its shell leads a session of its own) ends with it.
  kill -- "-$(cat "$work/$name.pgid")" 2>/dev/null || true
  if [ "$status" = 124 ]; then
    echo "README $name: did not finish within 300 s" >&2; cat "$work/$name.out" >&2; failed=1
  fi
  awk -v d="$work/$name" '/^@@block [0-9]+@@$/ {gsub(/@@(block )?/, ""); n = $0; f = d ".got." n; printf "" > f; next}
       /^@@status [0-9]+@@$/ {gsub(/@@(status )?/, ""); print > (d ".status." n); f = ""; next}
       f {print > f}' "$work/$name.out"
  local n
  for n in $(seq "$blocks"); do
    if [ "$(cat "$work/$name.status.$n" 2>/dev/null)" != 0 ]; then
      echo "README $name: block $n ended with status $(cat "$work/$name.status.$n" 2>/dev/null || echo 'none (it never ended)')" >&2
      cat "$work/$name.got.$n" >&2 2>/dev/null || true
      failed=1
    fi
  done

  # Each `text` block against the output of the `sh` block before it: the same lines, as many
  # times each (a redaction that stopped working must not hide among the expected lines). The
  # demo's stderr holds much else, so the `demo-output` block's lines need only be in it.
  local mode="" kind="" line actual what want
  n=0
  while IFS= read -r line; do
    case "$line" in
      '<!-- demo-output -->') kind=demo ;;
      '```sh') mode=sh; n=$((n + 1)) ;;
      '```text') mode=text; : > "$work/expected" ;;
      '```')
        if [ "$mode" = text ]; then
          if [ "$kind" = demo ]; then
            kind=""
            normalise < "$work/demo.err" > "$work/actual.norm"
            while IFS= read -r want; do
              want=$(printf '%s\n' "$want" | normalise)
              if ! grep -qxF -- "$want" "$work/actual.norm"; then
                echo "README $name: the demo's output did not have: $want" >&2
                cat "$work/demo.err" >&2; failed=1
              fi
            done < "$work/expected"
          else
            actual="$work/$name.got.$n"; what="block $n"
            [ -e "$actual" ] || : > "$actual"
            normalise < "$actual" | sed '/^$/d' | sort > "$work/actual.norm"
            normalise < "$work/expected" | sed '/^$/d' | sort > "$work/expected.norm"
            if ! diff -u "$work/expected.norm" "$work/actual.norm" > "$work/diff"; then
              echo "README $name: $what printed other lines than the README shows (sorted, - README, + printed):" >&2
              cat "$work/diff" >&2; failed=1
            fi
          fi
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
for _ in $(seq 300); do grep -q "Ctrl-C stops the demo" "$work/demo.err" && break; sleep 0.1; done
grep -q "Ctrl-C stops the demo" "$work/demo.err" || { cat "$work/demo.err" >&2; exit 1; }
run_section tour "$repo"
kill "$demo" 2>/dev/null || true

# In front of your own API: an empty folder, outside the checkout.
mkdir -p "$work/own-api"
run_section own-api "$work/own-api"

[ "$failed" = 0 ] || exit 1
echo "README: every step printed what the README shows"
