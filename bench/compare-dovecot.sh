#!/usr/bin/env bash
# compare-dovecot.sh: the same IMAP load against hato and against a private, throw-away
# Dovecot instance on loopback (implicit TLS), one after the other, and a side-by-side
# summary: (a) operations per second of a mix with C clients, (b) resident memory per
# idle IMAP connection at N connections. See bench/README.md.
#
# Usage: bench/compare-dovecot.sh [--messages M] [--concurrency C] [--duration D]
#                                 [--idle N] [--only hato|dovecot] [--keep]
# or through the environment: MESSAGES (1000) CONCURRENCY (16) DURATION (20) IDLE (1000)
# ONLY KEEP. Other knobs: HATO_BIN, IMAP_LOAD (binaries), HATO_PORT, DOVECOT_PORT (first
# port tried), MIX (hato-imap-load --mix), SIZE (appended message size), LOAD_THREADS,
# DOVECOT_LOGIN (security: one imap-login process per connection, Dovecot's default;
# performance: service_count = 0, a few imap-login processes), DOVECOT_AUTH_CACHE
# (auth_cache_size, default 1M like hato's cache of verified logins; 0: off), TMPDIR (where
# both servers keep their data: the same disk for both).
#
# Needs root (Dovecot's master starts as root), the Debian dovecot-imapd package,
# openssl, ss, and both binaries built in release mode.
set -euo pipefail
BENCH=compare-dovecot
OTHER=dovecot
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZE=${SIZE:-2048}
LOAD_THREADS=${LOAD_THREADS:-1}
MIX=${MIX:-fetch_flags=1,fetch_body=3,search_unseen=1,search_subject=1,store=2,append=1,noop=1}
DOVECOT_LOGIN=${DOVECOT_LOGIN:-security}
DOVECOT_AUTH_CACHE=${DOVECOT_AUTH_CACHE:-1M}

bench_args "messages=1000 concurrency=16 duration=20 idle=1000 only" "$@"
case "$DOVECOT_LOGIN" in security|performance) ;; *) usage_error "DOVECOT_LOGIN must be security or performance" ;; esac

IMAP_LOAD=${IMAP_LOAD:-$ROOT/target/release/hato-imap-load}

# --- preconditions: check everything before starting anything ----------------------
require_root_and_binaries "Dovecot's master must start as root (it drops privileges)" "$IMAP_LOAD"
if [ "$ONLY" != hato ]; then
    if ! command -v dovecot >/dev/null || ! command -v doveadm >/dev/null || [ ! -x /usr/lib/dovecot/imap ]; then
        echo "compare-dovecot: Dovecot's IMAP server is not installed. Install it with:" >&2
        echo "    DEBIAN_FRONTEND=noninteractive apt-get install -y dovecot-imapd" >&2
        exit 1
    fi
    id mail >/dev/null 2>&1 || die "the mail user does not exist (needed as Dovecot's mail_uid)"
    id dovenull >/dev/null 2>&1 || die "the dovenull user does not exist (broken dovecot install?)"
    command -v openssl >/dev/null || die "openssl is needed to make Dovecot's certificate: apt-get install openssl"
fi
require_ss

# N idle connections + C load clients + preflights: raise the descriptor limit (the load
# generator and hato inherit it; Dovecot's master sets its own from its process limits).
WANT_FD=$(((IDLE + CONCURRENCY) * 4 + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$WANT_FD" ]; then
    ulimit -n "$WANT_FD" 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
    [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$WANT_FD" ] \
        || say "WARNING: ulimit -n is $(ulimit -n), below the $WANT_FD wanted for $IDLE idle connections"
fi

# The pid and all its descendants.
tree_pids() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2; pids[NR] = $1 }
        END {
            for (i = 1; i <= NR; i++) {
                p = pids[i]; q = p
                while (q != "" && q != 0 && q != root) q = parent[q]
                if (q == root) print p
            }
        }'
}
# Memory of a process tree in KiB: "RSS PSS PROCESSES". RSS counts shared pages (code,
# libraries) once per process; PSS divides them among the processes sharing them.
tree_mem() {
    local pid rss=0 pss=0 n=0 r p
    for pid in $(tree_pids "$1"); do
        [ -r "/proc/$pid/smaps_rollup" ] || continue
        r=$(awk '/^Rss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null) || continue
        p=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null) || continue
        [ -n "$r" ] && [ -n "$p" ] || continue
        rss=$((rss + r)); pss=$((pss + p)); n=$((n + 1))
    done
    echo "$rss $pss $n"
}

# Both servers keep their data below here, so both use the same file system.
bench_tmp hato-imap-bench "set TMPDIR to a disk for APPEND/STORE figures that mean anything about durability"
chmod 0755 "$TMP"
HATO_PID=
IDLE_PID=
DOVECOT_UP=0
DV=$TMP/dovecot

stop_dovecot() {
    if [ "$DOVECOT_UP" = 1 ]; then
        local pid
        pid=$(cat "$DV/run/master.pid" 2>/dev/null || true)
        dovecot -c "$DV/dovecot.conf" stop >/dev/null 2>&1
        for _ in $(seq 100); do
            [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    DOVECOT_UP=0
}
stop_idle() {
    if [ -n "$IDLE_PID" ] && kill -0 "$IDLE_PID" 2>/dev/null; then
        kill -TERM "$IDLE_PID"
        wait "$IDLE_PID" 2>/dev/null || true
    fi
    IDLE_PID=
}
cleanup() {
    local rc=$?
    set +e
    stop_idle
    stop_hato 100
    stop_dovecot
    remove_tmp "logs, configurations, mailboxes"
    exit "$rc"
}
on_exit cleanup

LOAD_ARGS=(--insecure --login "$BENCH_USER:$BENCH_PASSWORD" --threads "$LOAD_THREADS")

# Runs hato-imap-load; the JSON goes to $1, exit status 2 (some operations failed) is kept.
run_load() {
    local out=$1; shift
    load_json operations "$out" "$IMAP_LOAD" "${LOAD_ARGS[@]}" --json "$@"
}

# The measurements on one running server: $1 name, $2 port, $3 root pid of the server.
# Memory before, N idle connections, memory after; then the operations mix.
measure() {
    local name=$1 port=$2 root=$3 before after ready=$TMP/$1.idle-ready
    sleep 2
    before=$(tree_mem "$root")
    say "$name: $IDLE idle connections (LOGIN, SELECT, IDLE); memory before: RSS/PSS/processes $before"
    rm -f "$ready"
    "$IMAP_LOAD" "${LOAD_ARGS[@]}" --server "127.0.0.1:$port" --idle-connections "$IDLE" \
        --concurrency "$CONCURRENCY" --ready-file "$ready" --json >"$TMP/$name.idle.json" 2>"$TMP/$name.idle.err" &
    IDLE_PID=$!
    while [ ! -e "$ready" ]; do
        kill -0 "$IDLE_PID" 2>/dev/null || { cat "$TMP/$name.idle.err" >&2; die "$name: the idle connections failed"; }
        sleep 0.5
    done
    sleep 3 # let logins finish, the server settle
    after=$(tree_mem "$root")
    say "$name: $(json_get "$TMP/$name.idle.json" idle_connections) idling ($(json_get "$TMP/$name.idle.json" failed) failed) after $(json_get "$TMP/$name.idle.json" setup_s) s; memory after: $after"
    echo "$before $after $(json_get "$TMP/$name.idle.json" idle_connections)" >"$TMP/$name.mem"
    stop_idle
    sleep 2
    say "$name: operations mix, $CONCURRENCY clients, ${DURATION}s"
    run_load "$TMP/$name.json" --server "127.0.0.1:$port" --concurrency "$CONCURRENCY" \
        --duration "$DURATION" --mix "$MIX" --size "$SIZE" \
        || die "load against $name failed"
}

# --- hato --------------------------------------------------------------------------
run_hato() {
    local dir=$TMP/hato port
    port=$(pick_port "${HATO_PORT:-10993}")
    mkdir -p "$dir"
    # Keep the whole configuration in this one heredoc.
    cat >"$dir/hato.toml" <<EOF
hostname = "localhost"
data_dir = "$dir/hato-data"
domains = ["example.test"]

[[listener]]
protocol = "imap"
bind = "127.0.0.1:$port"
tls = "implicit"

# All load comes from one client address; N idle connections + C clients at once.
[limits]
max_connections = $((IDLE + CONCURRENCY + 100))
max_connections_per_ip = $((IDLE + CONCURRENCY + 100))
EOF
    hato_user "$dir/hato.toml"
    say "hato: serving IMAPS on 127.0.0.1:$port (log: $dir/hato.log)"
    start_hato "$dir/hato.toml" "$dir/hato.log" "$port"
    say "hato: preloading $MESSAGES messages with APPEND"
    run_load "$TMP/hato.preload.json" --server "127.0.0.1:$port" --append-only "$MESSAGES" \
        --concurrency "$CONCURRENCY" --size "$SIZE" || die "preloading hato failed"
    # A fresh process for the memory figures: the preload's heap growth doesn't count.
    stop_hato 100
    start_hato "$dir/hato.toml" "$dir/hato.log" "$port"
    measure hato "$port" "$HATO_PID"
    stop_hato 100
}

# --- Dovecot -----------------------------------------------------------------------
# The password hash hato stored for the bench account (made here if hato didn't run).
hato_hash() {
    local db=$TMP/hato/hato-data/hato.db
    command -v python3 >/dev/null || return 1
    if [ ! -f "$db" ]; then
        [ -x "$HATO_BIN" ] || return 1
        mkdir -p "$TMP/hash"
        printf 'hostname = "localhost"\ndata_dir = "%s"\ndomains = ["example.test"]\n' "$TMP/hash/data" >"$TMP/hash/hato.toml"
        printf '%s' "$BENCH_PASSWORD" | "$HATO_BIN" --config "$TMP/hash/hato.toml" user add "$BENCH_USER" --password-stdin \
            >/dev/null 2>&1 || return 1
        db=$TMP/hash/data/hato.db
    fi
    python3 - "$db" "$BENCH_USER" <<'PY'
import sqlite3, sys
row = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute(
    "SELECT password_hash FROM accounts WHERE address = ?", (sys.argv[2],)).fetchone()
print(row[0])
PY
}
run_dovecot() {
    local port uid gid login_service
    port=$(pick_port "${DOVECOT_PORT:-11993}")
    uid=$(id -u mail)
    gid=$(id -g mail)
    mkdir -p "$DV/run" "$DV/state" "$DV/mail"
    chown mail:mail "$DV/mail"
    self_signed localhost "$DV/key.pem" "$DV/cert.pem"
    chmod 0600 "$DV/key.pem"
    # The very argon2id PHC string hato stores (m=19456,t=2,p=1), so every LOGIN costs the
    # same on both (Dovecot verifies it with libsodium); doveadm's own default is
    # m=65536,t=3, three times the work and memory per login.
    local hash
    hash=$(hato_hash) || hash=
    if [ -z "$hash" ]; then
        say "dovecot: WARNING: no hato-made hash (no hato binary or python3): doveadm's ARGON2ID parameters"
        hash=$(doveadm -c /dev/null pw -s ARGON2ID -p "$BENCH_PASSWORD" | sed 's/^{ARGON2ID}//')
    fi
    echo "$BENCH_USER:{ARGON2ID}$hash" >"$DV/passwd"
    chmod 0640 "$DV/passwd"
    chgrp dovecot "$DV/passwd"
    if [ "$DOVECOT_LOGIN" = performance ]; then
        login_service="service_count = 0
  process_min_avail = 2
  client_limit = $((IDLE + CONCURRENCY + 100))"
    else
        login_service="# Dovecot's default (high-security mode): one imap-login process per connection,
  # which stays as the TLS proxy for the whole session.
  service_count = 1"
    fi
    cat >"$DV/dovecot.conf" <<EOF
# Private benchmark instance: nothing here touches /etc/dovecot or the system service.
instance_name = dovecot-bench-$$
base_dir = $DV/run
state_dir = $DV/state
protocols = imap
listen = 127.0.0.1
log_path = $DV/dovecot.log
ssl = required
ssl_cert = <$DV/cert.pem
ssl_key = <$DV/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain
# hato keeps recently verified credentials for 5 minutes (no argon2 per login); this is
# Dovecot's equivalent (off by default in Dovecot). DOVECOT_AUTH_CACHE=0 turns it off.
auth_cache_size = $DOVECOT_AUTH_CACHE
auth_cache_ttl = 5 mins
passdb {
  driver = passwd-file
  args = $DV/passwd
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$DV/mail/%u
}
mail_location = maildir:~/Maildir
mail_uid = $uid
mail_gid = $gid
first_valid_uid = $uid
first_valid_gid = $gid
# N idle connections + C load clients, all from 127.0.0.1.
default_client_limit = $((2 * (IDLE + CONCURRENCY) + 200))
protocol imap {
  mail_max_userip_connections = $((IDLE + CONCURRENCY + 100))
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $port
    ssl = yes
  }
  process_limit = $((IDLE + CONCURRENCY + 100))
  $login_service
}
service imap {
  process_limit = $((IDLE + CONCURRENCY + 100))
}
service anvil {
  client_limit = $((2 * (IDLE + CONCURRENCY) + 300))
}
EOF
    dovecot -c "$DV/dovecot.conf" -n >/dev/null 2>"$DV/config-check.err" \
        || { cat "$DV/config-check.err" >&2; die "dovecot rejected its configuration"; }
    say "dovecot: $(dovecot --version) private instance on 127.0.0.1:$port (config $DV/dovecot.conf, login processes: $DOVECOT_LOGIN)"
    dovecot -c "$DV/dovecot.conf" || { cat "$DV/dovecot.log" >&2 2>/dev/null; die "dovecot start failed"; }
    DOVECOT_UP=1
    wait_listening "$port" "" 30 || die "dovecot did not start listening on 127.0.0.1:$port (log: $DV/dovecot.log)"
    say "dovecot: preloading $MESSAGES messages with APPEND"
    run_load "$TMP/dovecot.preload.json" --server "127.0.0.1:$port" --append-only "$MESSAGES" \
        --concurrency "$CONCURRENCY" --size "$SIZE" || { tail -n 20 "$DV/dovecot.log" >&2; die "preloading dovecot failed"; }
    # Fresh processes for the memory figures, as for hato.
    stop_dovecot
    dovecot -c "$DV/dovecot.conf" || die "dovecot restart failed"
    DOVECOT_UP=1
    wait_listening "$port" "" 30 || die "dovecot did not come back on 127.0.0.1:$port"
    measure dovecot "$port" "$(cat "$DV/run/master.pid")"
    # Dovecot's warnings, counted (e.g. "Inotify instance limit ... exceeded": IDLE then
    # falls back to polling the Maildir; fs.inotify.max_user_instances is left alone).
    if grep -qiE 'warning|error' "$DV/dovecot.log" 2>/dev/null; then
        say "dovecot: warnings in its log (see $DV/dovecot.log; --keep to keep it):"
        { grep -oiE '(warning|error): [^,.(]*' "$DV/dovecot.log" | sort | uniq -c | sort -rn | head -n 5 >&2; } || true
    fi
    stop_dovecot
}

# --- run and report ----------------------------------------------------------------
[ "$ONLY" = dovecot ] || run_hato
[ "$ONLY" = hato ] || run_dovecot

row() { printf '  %-30s %14s %14s %14s\n' "$@"; }
ratio() { # hato dovecot
    awk -v h="$1" -v p="$2" 'BEGIN { if (h == "-" || p == "-" || h == "" || p == "" || p + 0 == 0) print "-"; else printf "%.2f", h / p }'
}
# Per idle connection, KiB: field 1 RSS, 2 PSS, 3 processes (before, after, connections).
mem() { # name field
    [ -f "$TMP/$1.mem" ] || { echo -; return; }
    awk -v f="$2" '{ b = $f; a = $(f + 3); n = $7; if (f == 3) print a - b; else if (n > 0) printf "%.1f", (a - b) / n; else print "-" }' "$TMP/$1.mem"
}
memtotal() { # name field before|after → MiB
    [ -f "$TMP/$1.mem" ] || { echo -; return; }
    awk -v f="$2" -v w="$3" '{ v = (w == "before") ? $f : $(f + 3); printf "%.1f", v / 1024 }' "$TMP/$1.mem"
}

echo
echo "hato vs Dovecot, IMAPS on loopback: $MESSAGES messages preloaded, $CONCURRENCY clients for ${DURATION}s"
echo "(a) operations per second, mix $MIX"
row "" hato dovecot hato/dovecot
for k in ops_per_s latency_ms_p50 latency_ms_p99 \
    fetch_flags_ops_per_s fetch_body_ops_per_s search_unseen_ops_per_s search_subject_ops_per_s \
    store_ops_per_s append_ops_per_s noop_ops_per_s \
    fetch_flags_ms_p50 fetch_body_ms_p50 search_unseen_ms_p50 search_subject_ms_p50 \
    store_ms_p50 append_ms_p50 noop_ms_p50 login_select_ms_p50; do
    h=$(val hato $k); d=$(val dovecot $k)
    row "$k" "$h" "$d" "$(ratio "$h" "$d")"
done
for k in ok failed; do
    row "$k" "$(val hato $k)" "$(val dovecot $k)" ""
done
echo
echo "(b) memory per idle connection at $IDLE connections (LOGIN + SELECT INBOX + IDLE), KiB"
row "" hato dovecot hato/dovecot
h=$(mem hato 1); d=$(mem dovecot 1); row "RSS per connection, KiB" "$h" "$d" "$(ratio "$h" "$d")"
h=$(mem hato 2); d=$(mem dovecot 2); row "PSS per connection, KiB" "$h" "$d" "$(ratio "$h" "$d")"
row "RSS before, MiB" "$(memtotal hato 1 before)" "$(memtotal dovecot 1 before)" ""
row "RSS after, MiB" "$(memtotal hato 1 after)" "$(memtotal dovecot 1 after)" ""
row "processes added" "$(mem hato 3)" "$(mem dovecot 3)" ""
echo
echo "  ops_per_s: higher is better (target hato/dovecot >= 1); latencies in ms, lower is better."
echo "  Memory: sum over the server's processes (hato: one; Dovecot: master and every child),"
echo "  (after - before) / connections; target hato/dovecot <= 0.10. RSS counts shared pages once"
echo "  per process, PSS shares them out. Dovecot login processes: $DOVECOT_LOGIN."
echo "  Raw results: hato-imap-load --json output, $( [ "$KEEP" = 1 ] && echo "kept in $TMP" || echo "rerun with --keep to keep them")."
