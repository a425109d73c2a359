#!/bin/sh
# aclmilter installer for Debian bookworm (run as root or with sudo).
#
#   scripts/setup.sh run    install what the milter needs, then run it in the foreground with
#                           policies/default.yaml on a unix socket and print the Postfix lines
#   scripts/setup.sh test   install everything the test suite needs (Postfix, Knot, Redis,
#                           MariaDB, OpenDMARC tools, SpamAssassin, rspamd, ...), run ruff
#                           and mypy, then the tests
#   scripts/setup.sh deps [run|test|bench]   only install (bench: test + the peers of
#                           bench/peers.py: opendkim, opendmarc, pyspf-milter, rspamd)
#   scripts/setup.sh deb [VERSION]     build dist/aclmilter_<version>_all.deb (scripts/build-deb.sh)
#
# `run` puts the socket where Debian's chrooted smtpd finds it: $ACLMILTER_SPOOL (default
# /var/spool/postfix, Postfix's queue directory)/aclmilter/aclmilter.sock, directory group
# postfix 0750, socket group postfix 0660. ACLMILTER_NO_INSTALL=1 skips the installation
# (a second run, or the test that runs this against a private Postfix).
#
# Packages are installed without starting their system daemons (a temporary policy-rc.d),
# because the tests start private instances on free loopback ports.
set -eu

HERE=$(cd "$(dirname "$0")/.." && pwd)
MODE=${1:-run}
VENV=${ACLMILTER_VENV:-$HERE/.venv}
PY=${PYTHON:-python3}

RUN_PKGS="python3 python3-venv python3-dev gcc libmilter-dev"
TEST_PKGS="$RUN_PKGS postfix swaks bind9-dnsutils knot knot-dnsutils redis-server mariadb-server \
 opendmarc libswitch-perl libdbd-mysql-perl libhttp-message-perl libio-compress-perl publicsuffix \
 spamassassin spamc spamd rspamd miltertest systemd opendkim-tools procps iproute2 ca-certificates \
 lintian man-db python3-pytest python3-hypothesis python3-milter python3-spf python3-dnspython python3-dkim \
 python3-authres python3-redis python3-publicsuffix2 python3-prometheus-client python3-idna python3-yaml"
# the peers of issue 23's benchmark (bench/peers.py), started privately by the bench
BENCH_PKGS="opendkim opendmarc pyspf-milter rspamd util-linux"

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "scripts/setup.sh: run as root (or with sudo)" >&2
        exit 2
    fi
}

apt_install() {
    need_root
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    added_rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && added_rc=1
    fi
    apt-get -o DPkg::Lock::Timeout=900 update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends $missing
    [ "$added_rc" = 1 ] && rm -f /usr/sbin/policy-rc.d
    return 0
}

# Exim is the oracle of the ACL tests (tests/harness/exim.py). exim4-daemon-heavy conflicts
# with Postfix, so it is never installed: its .debs (and libidn12, which it links and bookworm
# no longer installs by default) are unpacked into a directory. The binary refuses to start
# unless its compiled-in user exists, so that system user is created as the package would.
EXIM_DIR=${ACLMILTER_EXIM_DIR:-/var/cache/aclmilter-test/exim}
exim_unpack() {
    need_root
    if [ -x "$EXIM_DIR/usr/sbin/exim4" ] && [ -d "$EXIM_DIR/etc/exim4/conf.d/acl" ]; then
        :
    else
        work=$(mktemp -d)
        chmod 755 "$work"      # apt's _apt user downloads into it
        (cd "$work" && apt-get -o DPkg::Lock::Timeout=900 download exim4-daemon-heavy exim4-base exim4-config libidn12) || {
            apt-get -o DPkg::Lock::Timeout=900 update -q
            (cd "$work" && apt-get download exim4-daemon-heavy exim4-base exim4-config libidn12)
        }
        mkdir -p "$EXIM_DIR"
        for deb in "$work"/*.deb; do dpkg -x "$deb" "$EXIM_DIR"; done
        rm -rf "$work"
    fi
    getent passwd Debian-exim >/dev/null || useradd --system --user-group --no-create-home \
        --home-dir /var/spool/exim4 --shell /usr/sbin/nologin Debian-exim
}

python_env() {
    extra=$1
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel >/dev/null
    "$VENV/bin/python" -m pip install -q -e "$HERE$extra"
}

case "$MODE" in
run)
    if [ "${ACLMILTER_NO_INSTALL:-0}" != 1 ]; then
        apt_install $RUN_PKGS
        python_env ""
    fi
    need_root
    SPOOL=${ACLMILTER_SPOOL:-/var/spool/postfix}
    SOCKDIR=$SPOOL/aclmilter
    SOCK=$SOCKDIR/aclmilter.sock
    GROUP=postfix
    getent group postfix >/dev/null || GROUP=root
    # the same directory, owner and modes as the Debian package: smtpd (user postfix, group
    # postfix) may traverse it and connect; nobody else may
    install -d -m 0750 -g "$GROUP" "$SOCKDIR"
    # Debian's master.cf runs smtpd chrooted in the queue directory (column 5 `y`): then it
    # sees the socket relative to that directory
    # column 5 of the first smtpd line of type inet (no master.cf yet: Debian's default, y)
    CHROOT=$(postconf -c "${ACLMILTER_POSTFIX_CONF:-/etc/postfix}" -M 2>/dev/null |
        awk '$2 == "inet" && $8 == "smtpd" { print $5; exit }')
    CHROOT=${CHROOT:-y}
    if [ "$CHROOT" = y ]; then MILTER="unix:/aclmilter/aclmilter.sock"; else MILTER="unix:$SOCK"; fi
    cat <<MSG
aclmilter is starting with $HERE/policies/default.yaml on unix:$SOCK (group $GROUP, mode 0660)
Attach it to Postfix (main.cf), then 'postfix reload':
    smtpd_milters = $MILTER
    non_smtpd_milters =
    milter_default_action = tempfail
    milter_protocol = 6
smtpd is chrooted: $CHROOT (master.cf column 5). A chrooted smtpd sees the socket as
unix:/aclmilter/aclmilter.sock, an unchrooted one as unix:$SOCK.
non_smtpd_milters stays empty: a policy that refuses at RCPT or DATA would leave mail from
sendmail(1) and cron stuck in the queue (docs/mta.md). Stop with Ctrl-C.
MSG
    exec "$VENV/bin/aclmilter" serve --policy "$HERE/policies/default.yaml" --socket "unix:$SOCK" \
        --socket-group "$GROUP" --socket-mode 0660
    ;;
deb)
    exec sh "$HERE/scripts/build-deb.sh" ${2:+"$2"}
    ;;
test)
    apt_install $TEST_PKGS
    exim_unpack
    python_env "[test]"
    cd "$HERE"
    # lint and type-check before the tests (configuration in pyproject.toml): a finding fails
    "$VENV/bin/ruff" check milter tests bench
    "$VENV/bin/mypy"
    set +e
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests
    rc=$?
    # pytest exits 5 when it collected no tests: that is a failure of the suite, not a pass.
    [ "$rc" = 5 ] && echo "no tests were collected" >&2
    exit $rc
    ;;
deps)
    if [ "${2:-run}" = bench ]; then apt_install $TEST_PKGS $BENCH_PKGS; exim_unpack; python_env "[test]"
    elif [ "${2:-run}" = test ]; then apt_install $TEST_PKGS; exim_unpack; python_env "[test]"; else apt_install $RUN_PKGS; python_env ""; fi
    ;;
*)
    echo "usage: scripts/setup.sh run|test|deb [VERSION]|deps [run|test|bench]" >&2
    exit 2
    ;;
esac
