#!/bin/sh
# Writes the manual page matviews(1) from the CLI's own help: help2man reads
# `matviews --help` and `--version`, and a COMMANDS section holds `matviews
# help COMMAND` of every command.
#   sh tools/man.sh ./matviews build/matviews.1
set -eu
BIN=$1
OUT=$2
command -v help2man >/dev/null 2>&1 || { echo "help2man is missing: run make deps" >&2; exit 1; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
inc=$tmp/include
# help2man reads the first line of the usage: the wrapper joins argparse's
# wrapped usage lines into one
cat >"$tmp/matviews" <<WRAP
#!/bin/sh
if [ "\$1" = --help ]; then
  "$BIN" --help | awk 'NR == 1 { u = \$0; next }
    !done && /^       [^ ]/ { sub(/^ +/, " "); u = u \$0; next }
    { if (!done) { print u; done = 1 } print }'
else
  exec "$BIN" "\$@"
fi
WRAP
chmod +x "$tmp/matviews"
{
  echo "[COMMANDS]"
  for c in $("$BIN" -e 'for _, n in ipairs(require("matviews.cli").commands) do print(n) end'); do
    echo ".SS $c"
    echo ".nf"
    # a line starting with . or ' would be a roff request
    "$BIN" help "$c" | sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
    echo ".fi"
  done
  echo "[ENVIRONMENT]"
  echo "DATABASE_URL and libpq's PG* variables choose the database; without them matviews runs its own"
  echo "cluster under .matviews/ in the project directory (MATVIEWS_HOME elsewhere)."
  echo "[SEE ALSO]"
  echo "The README of the matviews source tree."
} >"$inc"
mkdir -p "$(dirname "$OUT")"
help2man --no-info --no-discard-stderr --section=1 \
  --name="PostgreSQL materialized views, managed from Lua" --include="$inc" "$tmp/matviews" >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
