#!/bin/sh
# Build dist/aclmilter_<version>_all.deb from this checkout with dpkg-deb (no build
# dependencies beyond dpkg and gzip; see README "Debian package" for why not dpkg-buildpackage).
#
#   sh scripts/build-deb.sh [VERSION]
#
# VERSION defaults to aclmilter.__version__ (milter/aclmilter/__init__.py, the one place it is
# defined). Another VERSION is also written into the packaged __init__.py, so the installed
# `aclmilter --version` always says what dpkg says (the upgrade test builds N+1 that way).
set -eu

HERE=$(cd "$(dirname "$0")/.." && pwd)
SRC_VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$HERE/milter/aclmilter/__init__.py")
VERSION=${1:-$SRC_VERSION}
case "$VERSION" in
    ''|*[!0-9A-Za-z.+~-]*) echo "build-deb: bad version '$VERSION'" >&2; exit 2 ;;
esac
PKG=$HERE/packaging/deb
OUT=$HERE/dist
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
ROOT=$STAGE/root
# reproducible timestamps and gzip headers: the last commit's time, else a fixed one
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$HERE" log -1 --format=%ct 2>/dev/null || echo 1700000000)}
export SOURCE_DATE_EPOCH
umask 022

DOC=$ROOT/usr/share/doc/aclmilter
PYDIR=$ROOT/usr/lib/python3/dist-packages
install -d "$ROOT/DEBIAN" "$ROOT/usr/bin" "$PYDIR" "$ROOT/etc/aclmilter" "$ROOT/lib/systemd/system" \
    "$ROOT/usr/share/man/man8" "$ROOT/usr/share/man/man5" "$DOC/examples"

# the import package, without byte-code (postinst runs py3compile)
(cd "$HERE/milter" && find aclmilter -name __pycache__ -prune -o -type f \( -name '*.py' -o -path 'aclmilter/data/*' \) -print) |
    while read -r f; do install -D -m 0644 "$HERE/milter/$f" "$PYDIR/$f"; done
if [ "$VERSION" != "$SRC_VERSION" ]; then
    sed -i "s/^__version__ = \".*\"$/__version__ = \"$VERSION\"/" "$PYDIR/aclmilter/__init__.py"
fi
cat > "$ROOT/usr/bin/aclmilter" <<'PY'
#!/usr/bin/python3
"""aclmilter command line (Debian package): see aclmilter(8)."""
import sys

from aclmilter.cli import main

sys.exit(main())
PY
chmod 0755 "$ROOT/usr/bin/aclmilter"

install -m 0644 "$HERE/policies/default.yaml" "$ROOT/etc/aclmilter/policy.yaml"
install -m 0644 "$HERE/systemd/aclmilter.service" "$ROOT/lib/systemd/system/aclmilter.service"
gzip -9n -c "$HERE/docs/man/aclmilter.8" > "$ROOT/usr/share/man/man8/aclmilter.8.gz"
gzip -9n -c "$HERE/docs/man/aclmilter-policy.5" > "$ROOT/usr/share/man/man5/aclmilter-policy.5.gz"

install -m 0644 "$HERE/README.md" "$PKG/README.Debian" "$PKG/copyright" "$DOC/"
for f in "$HERE"/docs/*.md; do install -m 0644 "$f" "$DOC/"; done
for f in "$HERE"/policies/examples/*.yaml; do install -m 0644 "$f" "$DOC/examples/"; done
install -m 0644 "$HERE/systemd/aclmilter.service.d/10-network.conf.example" "$DOC/examples/"
DATE=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
printf 'aclmilter (%s) unstable; urgency=medium\n\n  * Built from the aclmilter source tree (version %s).\n\n -- aclmilter developers <aclmilter-maintainers@lists.example.org>  %s\n' \
    "$VERSION" "$SRC_VERSION" "$DATE" | gzip -9n > "$DOC/changelog.gz"

install -m 0755 "$PKG/postinst" "$PKG/prerm" "$PKG/postrm" "$ROOT/DEBIAN/"
echo /etc/aclmilter/policy.yaml > "$ROOT/DEBIAN/conffiles"
SIZE=$(du -k -s --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@SIZE@/$SIZE/" "$PKG/control.in" > "$ROOT/DEBIAN/control"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print | sed 's|^\./||' | sort |
    xargs md5sum) > "$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles" "$ROOT/DEBIAN/md5sums"
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$OUT"
DEB=$OUT/aclmilter_${VERSION}_all.deb
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
echo "$DEB"
