#!/usr/bin/env bash
# compare-postfix.sh: the same SMTP submission load against hato and against a
# private, throw-away Postfix instance on loopback, one after the other, and a
# side-by-side summary. See bench/README.md.
#
# Usage: bench/compare-postfix.sh [--messages N] [--concurrency C] [--size BYTES]
#                                 [--per-connection K] [--only hato|postfix] [--keep]
# or the same through the environment: MESSAGES CONCURRENCY SIZE PER_CONNECTION ONLY KEEP.
# Other knobs: HATO_BIN, HATO_LOAD (binaries), HATO_PORT, POSTFIX_PORT (first port tried),
# DRAIN_TIMEOUT (s to wait for Postfix's queue to empty), POSTFIX_MAINCF_EXTRA (lines
# appended to the private main.cf), LOAD_THREADS (client runtime threads), TMPDIR
# (where both servers keep their data: the same disk for both).
#
# Needs root (Postfix's master must start as root and drops to the postfix user), the
# Debian postfix package, openssl, ss, and both binaries built in release mode.
set -euo pipefail
BENCH=compare-postfix
OTHER=postfix
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}
LOAD_THREADS=${LOAD_THREADS:-1}

bench_args "messages=2000 concurrency=16 size=4096 per-connection=1 only" "$@"

HATO_LOAD=${HATO_LOAD:-$ROOT/target/release/hato-load}

# --- preconditions: check everything before starting anything ----------------------
require_root_and_binaries "Postfix's master must start as root (it drops to the postfix user)" "$HATO_LOAD"
if [ "$ONLY" != hato ]; then
    require_postfix Postfix "to make Postfix's certificate"
fi
require_ss

# Both servers keep their data below here, so both pay the same file system's fsync.
bench_tmp hato-bench "set TMPDIR to a disk to measure durability"
# Postfix's unprivileged daemons and virtual(8) (as the postfix user) use absolute
# paths below here.
chmod 0755 "$TMP"
HATO_PID=
POSTFIX_UP=() # the config directory of the running Postfix instance
PF=$TMP/postfix

cleanup() {
    local rc=$? d
    set +e
    stop_hato
    for d in "${POSTFIX_UP[@]}"; do postfix_stop "$d"; done
    remove_tmp "logs, queues, mailboxes"
    exit "$rc"
}
on_exit cleanup

LOAD_ARGS=(--messages "$MESSAGES" --concurrency "$CONCURRENCY" --size "$SIZE"
    --messages-per-connection "$PER_CONNECTION" --tls starttls --insecure
    --to "$BENCH_USER" --threads "$LOAD_THREADS" --json)

# Runs the load; the JSON goes to $1, the exit status 2 (some messages failed) is kept.
run_load() {
    local out=$1; shift
    load_json messages "$out" "$HATO_LOAD" "${LOAD_ARGS[@]}" "$@"
}

# --- hato --------------------------------------------------------------------------
run_hato() {
    local dir=$TMP/hato port
    port=$(pick_port "${HATO_PORT:-10587}")
    mkdir -p "$dir"
    # Keep the whole configuration in this one heredoc.
    cat >"$dir/hato.toml" <<EOF
hostname = "localhost"
data_dir = "$dir/hato-data"
domains = ["example.test"]

[[listener]]
protocol = "submission"
bind = "127.0.0.1:$port"
tls = "starttls"
require_tls = true

# All load comes from one client address (Postfix gets the same: no per-client limit).
[limits]
max_connections_per_ip = $((CONCURRENCY * 2 + 10))
EOF
    hato_user "$dir/hato.toml"
    say "hato: serving on 127.0.0.1:$port (log: $dir/hato.log)"
    start_hato "$dir/hato.toml" "$dir/hato.log" "$port"
    say "hato: $MESSAGES messages, C=$CONCURRENCY, $SIZE B, K=$PER_CONNECTION, STARTTLS + AUTH PLAIN"
    run_load "$TMP/hato.json" --server "127.0.0.1:$port" --auth "$BENCH_USER:$BENCH_PASSWORD" --from "$BENCH_USER" \
        || { tail -n 20 "$dir/hato.log" >&2; die "load against hato failed"; }
    stop_hato
}

# --- Postfix -----------------------------------------------------------------------
run_postfix() {
    local port uid gid
    port=$(pick_port "${POSTFIX_PORT:-10600}")
    uid=$(id -u postfix)
    gid=$(id -g postfix)
    mkdir -p "$PF/etc" "$PF/mail"
    chown postfix:postfix "$PF/mail"
    # Its certificate (hato-load --ca-file cert.pem works as well as --insecure).
    self_signed localhost "$PF/etc/key.pem" "$PF/etc/cert.pem"
    echo "$BENCH_USER example.test/bench/" >"$PF/etc/vmailbox"
    postmap "$PF/etc/vmailbox"
    say "postfix: $(postconf -d -h mail_version) private instance on 127.0.0.1:$port (config $PF/etc)"
    postfix_instance "$PF" "$port" "myhostname = postfix-bench.localdomain
# AUTH would need a SASL server (Dovecot or Cyrus): clients are trusted by address instead.
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_helo_required = yes
default_process_limit = $((CONCURRENCY > 90 ? CONCURRENCY + 10 : 100))
relay_domains =
# Never send anything off this machine, whatever the recipients.
default_transport = error:5.7.1 benchmark instance delivers locally only
relay_transport = error:5.7.1 benchmark instance delivers locally only
# Final delivery to Maildirs under $PF/mail, like hato's own store.
virtual_mailbox_domains = example.test
virtual_mailbox_base = $PF/mail
virtual_mailbox_maps = hash:$PF/etc/vmailbox
virtual_minimum_uid = $uid
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
# STARTTLS required before MAIL, like hato's require_tls.
smtpd_tls_security_level = encrypt
smtpd_tls_chain_files = $PF/etc/key.pem, $PF/etc/cert.pem
smtpd_tls_loglevel = 0
smtpd_tls_session_cache_database = btree:\${data_directory}/smtpd_scache
${POSTFIX_MAINCF_EXTRA:-}"

    say "postfix: $MESSAGES messages, C=$CONCURRENCY, $SIZE B, K=$PER_CONNECTION, STARTTLS, no AUTH"
    run_load "$TMP/postfix.json" --server "127.0.0.1:$port" \
        || { tail -n 20 "$PF/maillog" >&2; die "load against postfix failed"; }

    # 250 from Postfix means "queued"; wait until everything is in the Maildir.
    local ok expected delivered start now queue
    ok=$(json_get "$TMP/postfix.json" ok)
    expected=$ok
    start=$(date +%s.%N)
    while :; do
        queue=$(postqueue -c "$PF/etc" -p 2>&1 | tail -n 1)
        delivered=$(find "$PF/mail" -path '*/new/*' -type f | wc -l)
        if [[ "$queue" == *"Mail queue is empty"* ]] && [ "$delivered" -ge "$expected" ]; then break; fi
        now=$(date +%s.%N)
        if awk -v a="$start" -v b="$now" -v t="$DRAIN_TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
            say "WARNING: Postfix did not finish delivery in ${DRAIN_TIMEOUT}s: $delivered/$expected delivered, queue: $queue"
            break
        fi
        sleep 0.2
    done
    now=$(date +%s.%N)
    POSTFIX_DELIVERED=$delivered
    POSTFIX_DRAIN_S=$(awk -v a="$start" -v b="$now" 'BEGIN { printf "%.2f", b - a }')
    postfix_stop "$PF/etc"
    POSTFIX_UP=()
}

# --- run and report ----------------------------------------------------------------
POSTFIX_DELIVERED=
POSTFIX_DRAIN_S=
[ "$ONLY" = postfix ] || run_hato
[ "$ONLY" = hato ] || run_postfix

row() { printf '  %-28s %14s %14s %14s\n' "$@"; }
ratio() { # hato postfix
    awk -v h="$1" -v p="$2" 'BEGIN { if (h == "-" || p == "-" || h == "null" || p == "null" || p + 0 == 0) print "-"; else printf "%.2f", h / p }'
}

echo
echo "hato vs Postfix: $MESSAGES messages, concurrency $CONCURRENCY, ~$SIZE B each, $PER_CONNECTION per connection, STARTTLS"
row "" hato postfix hato/postfix
for k in msgs_per_s latency_ms_p50 latency_ms_p99 latency_ms_max setup_ms_p50; do
    h=$(val hato $k); p=$(val postfix $k)
    row "$k" "$h" "$p" "$(ratio "$h" "$p")"
done
for k in ok failed elapsed_s client_cpu_s; do
    row "$k" "$(val hato $k)" "$(val postfix $k)" ""
done
if [ -n "$POSTFIX_DELIVERED" ]; then
    row "delivered to Maildir" "$([ -f "$TMP/hato.json" ] && echo "(on 250)" || echo -)" "$POSTFIX_DELIVERED" ""
    row "queue drain after load, s" "-" "$POSTFIX_DRAIN_S" ""
fi
echo
echo "  msgs_per_s: higher is better; latency (MAIL → 250 after DATA, ms): lower is better."
echo "  hato/postfix > 1 means hato is faster for msgs_per_s, slower for latencies."
echo "  NOTE: hato authenticates every connection (AUTH PLAIN); Postfix trusts 127.0.0.0/8"
echo "  and does no AUTH, which favours Postfix. Postfix's 250 means queued (fsynced);"
echo "  its delivery into the Maildir is counted separately above."
echo "  Raw results: hato-load --json output, $( [ "$KEEP" = 1 ] && echo "kept in $TMP" || echo "rerun with --keep to keep them")."
