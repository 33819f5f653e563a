#!/usr/bin/env bash
# Runs the README's tour against a fresh demo and checks its outputs: every command between
# `<!-- tour:start -->` and `<!-- tour:end -->` runs in order, and every line of the `text` block
# after it must appear in what it printed. Request ids and other 32-hex values compare as <hex32>;
# metric counts as <n>. The `demo-output` block is checked against the demo's own stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --quiet
work=$(mktemp -d)
trap 'kill "${demo:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
# A fresh store, so counts and the inbox are the tour's own: the demo's config, data elsewhere.
mkdir -p "$work/config"
cp -r config/rules config/dev.env "$work/config/"
sed 's|^path = "../data/gateway.db"|path = "'"$work"'/gateway.db"|; s|"../certs/dev/|"'"$PWD"'/certs/dev/|g' \
  config/gateway.toml > "$work/config/gateway.toml"
target/debug/recipient-gateway demo --config "$work/config/gateway.toml" > "$work/demo.out" 2> "$work/demo.err" &
demo=$!
for _ in $(seq 50); do grep -q "Ctrl-C stops the demo" "$work/demo.err" && break; sleep 0.1; done
grep -q "Ctrl-C stops the demo" "$work/demo.err" || { cat "$work/demo.err" >&2; exit 1; }

normalise() { sed -E 's/[0-9a-f]{32}/<hex32>/g; s/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z/<time>/g; s/^(gateway_[a-z_]+(\{[^}]*\})?) [0-9.e+]+$/\1 <n>/'; }

# Splits the tour into (command, expected) pairs and the demo-output block.
awk '/<!-- tour:start -->/ {on=1} /<!-- tour:end -->/ {on=0} on' README.md > "$work/tour.md"
n=0; failed=0; mode=""; kind=""
while IFS= read -r line; do
  case "$line" in
    '<!-- demo-output -->') kind=demo ;;
    '```sh') mode=sh; : > "$work/cmd" ;;
    '```text') mode=text; : > "$work/expected" ;;
    '```')
      if [ "$mode" = sh ]; then
        n=$((n + 1)); sleep 0.5
        bash "$work/cmd" > "$work/got" 2>&1 || true
      elif [ "$mode" = text ]; then
        if [ "$kind" = demo ]; then actual="$work/demo.err"; what="the demo's output"; kind=""
        else actual="$work/got"; what="command $n ($(head -c 60 "$work/cmd")…)"; fi
        normalise < "$actual" > "$work/actual.norm"
        while IFS= read -r want; do
          want=$(printf '%s\n' "$want" | normalise)
          if ! grep -qxF -- "$want" "$work/actual.norm"; then
            echo "README tour: $what did not print: $want" >&2
            echo "--- it printed:" >&2; cat "$actual" >&2
            failed=1
          fi
        done < "$work/expected"
      fi
      mode="" ;;
    *)
      if [ "$mode" = sh ]; then printf '%s\n' "$line" >> "$work/cmd"
      elif [ "$mode" = text ]; then printf '%s\n' "$line" >> "$work/expected"; fi ;;
  esac
done < "$work/tour.md"
[ "$n" -ge 6 ] || { echo "README tour: only $n commands found" >&2; exit 1; }
[ "$failed" = 0 ] || exit 1
echo "README tour: $n commands, outputs as documented"
