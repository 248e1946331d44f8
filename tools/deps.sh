#!/bin/sh
# Installs whichever of the Debian packages named as arguments are missing.
# As root: one `apt-get update`, then one `apt-get install`. As another user it
# prints the command to run and fails.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "matviews: missing packages:$missing" >&2
  echo "run as root: apt-get update && apt-get install -y$missing" >&2
  exit 1
fi
echo "installing:$missing"
apt-get update -qq || exit 1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$missing >/dev/null || exit 1
