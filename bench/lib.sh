# bench/lib.sh: what the compare-*.sh scripts share (sourced; not a script of its own).
# Set BENCH (the script's name, for messages) before sourcing.

say() { printf '==> %s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "$BENCH" "$*" >&2; exit 1; }
usage_error() { echo "$BENCH: $*" >&2; exit 64; }

# What every script takes from the environment, or defaults to: ONLY (one server: hato or
# $OTHER; empty: both), KEEP (1: keep $TMP), the hato binary, and the account hato_user adds.
ONLY=${ONLY:-}
KEEP=${KEEP:-0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HATO_BIN=${HATO_BIN:-$ROOT/target/release/hato}
BENCH_USER=bench@example.test
BENCH_PASSWORD=secret

# bench_args "OPTION[=DEFAULT]..." "$@": each OPTION (one of the first argument's words) is
# a variable named like it in upper case with _ for - (per-connection: PER_CONNECTION),
# which keeps its value from the environment, else takes DEFAULT; --OPTION VALUE overrides
# both (--per-connection 4: PER_CONNECTION=4). --keep sets KEEP=1; -h/--help prints the
# script's header comment.
bench_args() {
    local options=" " spec name var
    for spec in $1; do
        name=${spec%%=*}
        options+="$name "
        var=${name//-/_}
        var=${var^^}
        if [[ "$spec" == *=* && -z "${!var:-}" ]]; then
            printf -v "$var" '%s' "${spec#*=}"
        fi
    done
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --keep) KEEP=1; shift ;;
            -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
            --*)
                name=${1#--}
                [[ "$options" == *" $name "* ]] || usage_error "unknown argument $1 (see --help)"
                name=${name//-/_}
                printf -v "${name^^}" '%s' "$2"
                shift 2 ;;
            *) usage_error "unknown argument $1 (see --help)" ;;
        esac
    done
    case "$ONLY" in ""|hato|"$OTHER") ;; *) usage_error "ONLY must be hato or $OTHER" ;; esac
}

# require_root_and_binaries REASON LOAD_GENERATOR: root (REASON says why), the load
# generator, and the hato binary unless ONLY=$OTHER.
require_root_and_binaries() {
    [ "$(id -u)" -eq 0 ] || die "run as root: $1"
    [ -x "$2" ] || die "load generator not found at $2; build it with: cargo build --release -p hato-bench"
    if [ "$ONLY" != "$OTHER" ]; then
        [ -x "$HATO_BIN" ] || die "hato binary not found at $HATO_BIN; build it with: cargo build --release -p hato (or set HATO_BIN, or run with ONLY=$OTHER)"
    fi
}
# require_postfix WHAT CERTIFICATE [COMMAND...]: Postfix installed (postfix, postconf and the
# COMMANDs; WHAT names it in the message), its user, and openssl (needed CERTIFICATE).
require_postfix() {
    local what=$1 certificate=$2 c
    shift 2
    for c in postfix postconf "$@"; do
        if ! command -v "$c" >/dev/null; then
            echo "$BENCH: $what is not installed. Install it with:" >&2
            echo "    DEBIAN_FRONTEND=noninteractive apt-get install -y postfix" >&2
            exit 1
        fi
    done
    id postfix >/dev/null 2>&1 || die "the postfix user does not exist (broken postfix install?)"
    command -v openssl >/dev/null || die "openssl is needed $certificate: apt-get install openssl"
}
require_ss() {
    command -v ss >/dev/null || die "ss is needed to find free ports: apt-get install iproute2"
}

port_free() { ! ss -Hltn "( sport = :$1 )" | grep -q .; }
pick_port() { # first port tried → the first free one from there
    local p=$1
    while ! port_free "$p"; do p=$((p + 1)); done
    echo "$p"
}
wait_listening() { # port pid-or-empty seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        port_free "$1" || return 0
        if [ -n "$2" ] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}
json_get() { # file key → value (the load generators' --json prints one key per line)
    sed -n "s/^  \"$2\": \(.*\)$/\1/p" "$1" | sed 's/,$//; s/^"//; s/"$//'
}

# bench_tmp PREFIX ADVICE: TMP, a new directory below ${TMPDIR:-/tmp} where everything of the
# run is kept; warns (with ADVICE) when it is on tmpfs, where fsync costs nothing.
bench_tmp() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    if [ "$(stat -f -c %T "$TMP")" = tmpfs ]; then
        say "WARNING: $TMP is on tmpfs, where fsync costs nothing: $2"
    fi
}

# on_exit FUNCTION: runs it when the script exits, also on SIGINT (130) and SIGTERM (143).
on_exit() {
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
# remove_tmp WHAT: removes $TMP, or with --keep says it is kept (WHAT: what is in it).
remove_tmp() {
    if [ "$KEEP" = 1 ]; then
        say "kept $TMP ($1)"
    else
        rm -rf "$TMP"
    fi
}

stop_pid() { # pid [tenths of a second to wait]: TERM, wait (5 s), KILL
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq "${2:-50}"); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$1" 2>/dev/null && kill -KILL "$1"
    wait "$1" 2>/dev/null || true
}
# A private Postfix instance: config directory $1/etc, queue $1/queue, data $1/data, log
# $1/maillog, master.cf from the system with chroot off and the smtp service moved to
# 127.0.0.1:$2; $3 is appended to main.cf. Nothing touches /etc/postfix or the system queue.
# Started, its config directory is added to POSTFIX_UP (for postfix_stop).
postfix_instance() { # dir port main.cf-lines
    local dir=$1 port=$2
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
    chown postfix:postfix "$dir/data"
    cp /etc/postfix/master.cf "$dir/etc/master.cf"
    cat >"$dir/etc/main.cf" <<EOF
# Private benchmark instance: nothing here touches /etc/postfix or the system queue.
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
mydomain = localdomain
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# All load comes from one client address: no per-client connection limit.
smtpd_client_connection_count_limit = 0
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = $dir/maillog
maillog_file_prefixes = $TMP
$3
EOF
    # Listen on 127.0.0.1:$port instead of port 25; no chroot (it would need copies of
    # /etc files inside the queue directory).
    postconf -c "$dir/etc" -MX smtp/inet
    postconf -c "$dir/etc" -M "127.0.0.1:$port/inet=127.0.0.1:$port inet n - n - - smtpd"
    # Debian ships tlsproxy commented out; smtp_tls_connection_reuse = yes needs it.
    postconf -c "$dir/etc" -M "tlsproxy/unix=tlsproxy unix - - n - 0 tlsproxy"
    postconf -c "$dir/etc" -F '*/*/chroot = n'
    postfix -c "$dir/etc" check >/dev/null 2>&1 || postfix -c "$dir/etc" check
    postfix -c "$dir/etc" start >/dev/null 2>&1 || { cat "$dir/maillog" >&2 2>/dev/null; die "postfix start failed ($dir)"; }
    POSTFIX_UP+=("$dir/etc")
    wait_listening "$port" "" 30 || die "postfix did not start listening on 127.0.0.1:$port (log: $dir/maillog)"
}
postfix_stop() { # config dir
    local pid_file
    pid_file=$(postconf -c "$1" -h queue_directory)/pid/master.pid
    postfix -c "$1" stop >/dev/null 2>&1 || true
    for _ in $(seq 100); do [ -e "$pid_file" ] || break; sleep 0.1; done
}

# self_signed NAME KEY CERT: a self-signed ECDSA P-256 leaf for NAME and 127.0.0.1, valid for
# 2 days, like hato's generated development certificate (CA:FALSE + SAN, so a client can
# trust it with --ca-file as well as take it with --insecure).
self_signed() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=$1" -addext "subjectAltName=DNS:$1,IP:127.0.0.1" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -keyout "$2" -out "$3" 2>/dev/null
}

# hato_user CONFIG: adds $BENCH_USER with $BENCH_PASSWORD.
hato_user() {
    say "hato: adding $BENCH_USER"
    printf '%s' "$BENCH_PASSWORD" | "$HATO_BIN" --config "$1" user add "$BENCH_USER" --password-stdin \
        || die "hato user add failed"
}
# start_hato CONFIG LOG PORT: `hato serve` in the background (HATO_PID), its output appended to
# LOG; returns once it listens on 127.0.0.1:PORT.
start_hato() {
    "$HATO_BIN" serve --config "$1" >>"$2" 2>&1 &
    HATO_PID=$!
    if ! wait_listening "$3" "$HATO_PID" 30; then
        tail -n 20 "$2" >&2
        die "hato did not start listening on 127.0.0.1:$3"
    fi
}

# stop_hato [TENTHS]: stops the hato of HATO_PID, if any (stop_pid: TERM, up to TENTHS tenths
# of a second, default 50, then KILL); HATO_PID is empty after.
stop_hato() {
    if [ -n "$HATO_PID" ]; then stop_pid "$HATO_PID" "${1:-50}"; fi
    HATO_PID=
}

# load_json WHAT OUT COMMAND...: runs a load generator with its JSON to OUT; exit status 2
# (some WHAT failed) is a warning and the run goes on, any other failure is returned.
load_json() {
    local what=$1 out=$2 rc=0
    shift 2
    "$@" >"$out" || rc=$?
    case $rc in
        0) ;;
        2) say "WARNING: $(json_get "$out" failed) $what failed: $(json_get "$out" failures)" ;;
        *) return "$rc" ;;
    esac
}
val() { [ -f "$TMP/$1.json" ] && json_get "$TMP/$1.json" "$2" || echo -; } # name key
