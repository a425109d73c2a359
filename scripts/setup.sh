#!/bin/sh
# aclmilter installer for Debian bookworm (run as root or with sudo).
#
#   scripts/setup.sh run    install what the milter needs, then run it in the foreground with
#                           policies/default.yaml on a unix socket and print the Postfix lines
#   scripts/setup.sh test   install everything the test suite needs (Postfix, Knot, Redis,
#                           MariaDB, OpenDMARC tools, SpamAssassin, rspamd, ...) and run it
#   scripts/setup.sh deps [run|test]   only install
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
 python3-milter"

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
    apt-get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
    [ "$added_rc" = 1 ] && rm -f /usr/sbin/policy-rc.d
    return 0
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
    apt_install $RUN_PKGS
    python_env ""
    # the systemd unit (systemd/aclmilter.service) runs /usr/local/bin/aclmilter
    ln -sf "$VENV/bin/aclmilter" /usr/local/bin/aclmilter
    install -d -m 0750 /run/aclmilter
    getent group postfix >/dev/null && chgrp postfix /run/aclmilter || true
    SOCK=/run/aclmilter/aclmilter.sock
    cat <<MSG
aclmilter is starting with $HERE/policies/default.yaml on unix:$SOCK
Attach it to Postfix (main.cf), then 'postfix reload':
    smtpd_milters = unix:$SOCK
    non_smtpd_milters = \$smtpd_milters
    milter_default_action = tempfail
    milter_protocol = 6
    milter_connect_macros = j {daemon_name} {daemon_addr} {daemon_port} {client_addr} {client_port} {client_name} {client_ptr}
    milter_mail_macros = i {auth_type} {auth_authen} {mail_addr} {tls_version} {cipher}
(Postfix's smtpd is chrooted by default: then put the socket under /var/spool/postfix,
 see docs/mta.md.) Stop with Ctrl-C.
MSG
    exec "$VENV/bin/aclmilter" serve --policy "$HERE/policies/default.yaml" --socket "unix:$SOCK"
    ;;
test)
    apt_install $TEST_PKGS
    python_env "[test]"
    cd "$HERE"
    set +e
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests
    rc=$?
    # pytest exits 5 when it collected no tests: that is a failure of the suite, not a pass.
    [ "$rc" = 5 ] && echo "no tests were collected" >&2
    exit $rc
    ;;
deps)
    if [ "${2:-run}" = test ]; then apt_install $TEST_PKGS; python_env "[test]"; else apt_install $RUN_PKGS; python_env ""; fi
    ;;
*)
    echo "usage: scripts/setup.sh run|test|deps [run|test]" >&2
    exit 2
    ;;
esac
