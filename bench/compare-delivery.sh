#!/usr/bin/env bash
# compare-delivery.sh: outbound delivery throughput of hato and of a private, throw-away
# Postfix instance, both delivering the same queued load to the same sink on loopback
# (Postfix's smtp-sink), in plaintext and with STARTTLS, and a side-by-side summary.
# See bench/README.md.
#
# Usage: bench/compare-delivery.sh [--messages N] [--size BYTES] [--concurrency C]
#                                  [--recipients K] [--variants "plain starttls"]
#                                  [--only hato|postfix] [--keep]
# or the same through the environment: MESSAGES SIZE CONCURRENCY RECIPIENTS VARIANTS ONLY KEEP.
# Other knobs: HATO_BIN, HATO_LOAD (binaries), TLS_LEVEL (sender TLS level of the starttls
# variant: encrypt (default) or may), DRAIN_TIMEOUT (s per run), INJECT_CONCURRENCY,
# BASE_PORT (first port tried), POSTFIX_MAINCF_EXTRA (lines appended to the sending
# Postfix's main.cf), PERF=1 (perf record hato's delivery; needs perf), TMPDIR (where both
# senders keep their queues: the same disk for both).
#
# Needs root (Postfix's master starts as root; smtp-sink must drop to a user), the Debian
# postfix package (postfix, smtp-sink), openssl, ss, and both binaries built in release mode.
set -euo pipefail
BENCH=compare-delivery
OTHER=postfix
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VARIANTS=${VARIANTS:-plain starttls}
TLS_LEVEL=${TLS_LEVEL:-encrypt}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}
INJECT_CONCURRENCY=${INJECT_CONCURRENCY:-16}
PERF=${PERF:-0}

bench_args "messages=2000 size=4096 concurrency=20 recipients=1 variants only" "$@"
case "$TLS_LEVEL" in may|encrypt) ;; *) usage_error "TLS_LEVEL must be may or encrypt" ;; esac
for v in $VARIANTS; do
    case "$v" in plain|starttls) ;; *) usage_error "VARIANTS: plain and/or starttls, not $v" ;; esac
done
for n in "$MESSAGES" "$SIZE" "$CONCURRENCY" "$RECIPIENTS"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || usage_error "$n is not a positive number"
done
# Postfix puts at most smtp_destination_recipient_limit (50) recipients in one transaction;
# above that the two senders would not make the same number of transactions.
[ "$RECIPIENTS" -le 50 ] || usage_error "at most 50 recipients per message"

HATO_LOAD=${HATO_LOAD:-$ROOT/target/release/hato-load}
SINK_DOMAIN=sink.test
SENDER=bench@sender.test
TICKS=$(getconf CLK_TCK)

# --- preconditions: check everything before starting anything ----------------------
require_root_and_binaries "Postfix's master must start as root (it drops to the postfix user)" "$HATO_LOAD"
require_postfix "Postfix (and its smtp-sink)" "for the sink's certificate" smtp-sink
require_ss
if [ "$PERF" = 1 ]; then command -v perf >/dev/null || die "PERF=1 needs perf (apt-get install linux-perf)"; fi

NEXT_PORT=${BASE_PORT:-10700}
next_port() { # → PICKED (not in a subshell: the next call must not pick the same port)
    PICKED=$(pick_port "$NEXT_PORT")
    NEXT_PORT=$((PICKED + 1))
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

bench_tmp hato-delivery "set TMPDIR to a disk to measure durability"
# Postfix's unprivileged daemons use absolute paths below here.
chmod 0755 "$TMP"
HATO_PID=
SINK_PID=
PERF_PID=
POSTFIX_UP=() # config directories of running Postfix instances

cleanup() {
    local rc=$? d
    set +e
    [ -n "$PERF_PID" ] && stop_pid "$PERF_PID"
    stop_hato
    for d in "${POSTFIX_UP[@]}"; do postfix_stop "$d"; done
    [ -n "$SINK_PID" ] && stop_pid "$SINK_PID"
    remove_tmp "logs, queues, sink counters"
    exit "$rc"
}
on_exit cleanup

# --- the sink ----------------------------------------------------------------------
# smtp-sink counts: with -c it rewrites "sess=S quit=Q mesg=M" (\r-separated) on stdout
# after every session, QUIT and "."; mesg counts transactions (one per message here).
next_port; SINK_PORT=$PICKED
smtp-sink -u postfix -4 -c "127.0.0.1:$SINK_PORT" 1024 >"$TMP/sink.counts" 2>"$TMP/sink.err" &
SINK_PID=$!
wait_listening "$SINK_PORT" "$SINK_PID" 10 || { cat "$TMP/sink.err" >&2; die "smtp-sink did not start on 127.0.0.1:$SINK_PORT"; }
sink_counter() { # sess|quit|mesg → the counter's last value
    local m
    m=$(tail -c 200 "$TMP/sink.counts" | tr '\r' '\n' | sed -n "s/.*$1=\([0-9]*\).*/\1/p" | tail -n 1)
    echo "${m:-0}"
}
sink_count() { sink_counter mesg; }
say "sink: smtp-sink on 127.0.0.1:$SINK_PORT (plaintext, no STARTTLS)"

# smtp-sink has no STARTTLS: for the starttls variant a private Postfix smtpd terminates
# TLS and passes every transaction through unchanged to the same smtp-sink
# (smtpd_proxy_filter, a before-queue proxy: nothing is queued or written to disk).
TLS_SINK_PORT=
if [[ " $VARIANTS " == *" starttls "* ]]; then
    next_port; TLS_SINK_PORT=$PICKED
    TS=$TMP/tls-sink
    mkdir -p "$TS/etc"
    # The senders do not verify it.
    self_signed "$SINK_DOMAIN" "$TS/etc/key.pem" "$TS/etc/cert.pem"
    postfix_instance "$TS" "$TLS_SINK_PORT" "myhostname = tls-sink.localdomain
smtpd_relay_restrictions = permit_mynetworks, reject
# Every transaction goes to smtp-sink as it arrives; smtp-sink's reply is the reply.
smtpd_proxy_filter = 127.0.0.1:$SINK_PORT
# Nothing is queued here (the proxy answers); discard, not error, so smtpd accepts RCPT.
default_transport = discard:tls sink
relay_transport = discard:tls sink
smtpd_tls_security_level = may
smtpd_tls_chain_files = $TS/etc/key.pem, $TS/etc/cert.pem
smtpd_tls_session_cache_database = btree:\${data_directory}/smtpd_scache
smtpd_tls_loglevel = 0
default_process_limit = $((CONCURRENCY * 2 + 20))"
    say "sink: Postfix smtpd with STARTTLS on 127.0.0.1:$TLS_SINK_PORT, proxying to smtp-sink (config $TS/etc)"
fi

# Connections the sender opened to the sink during one run, and (STARTTLS) how many of
# them and of the messages were under TLS. Plaintext: smtp-sink's session counter. STARTTLS:
# the front's "disconnect from ... starttls=1 mail=N" lines (smtp-sink there sees one proxy
# session per transaction). Read after the sender stopped, so every session has ended.
sink_mark() { # variant → a mark for sink_sessions
    if [ "$1" = starttls ]; then
        wc -l <"$TMP/tls-sink/maillog"
    else
        sink_counter sess
    fi
}
sink_sessions() { # variant mark → "sessions tls_sessions tls_messages"
    if [ "$1" = starttls ]; then
        sleep 0.5 # postlogd writes the last lines
        tail -n +"$(($2 + 1))" "$TMP/tls-sink/maillog" | awk '/ disconnect from / {
            n++; m = 0
            for (i = 1; i <= NF; i++) if ($i ~ /^mail=/) { split($i, a, /[=\/]/); m = a[2] }
            if ($0 ~ / starttls=1/) { t++; tm += m }
        } END { printf "%d %d %d\n", n, t, tm }'
    else
        echo "$(($(sink_counter sess) - $2)) 0 0"
    fi
}

sink_port_for() { # variant
    if [ "$1" = starttls ]; then echo "$TLS_SINK_PORT"; else echo "$SINK_PORT"; fi
}
level_for() { # variant
    if [ "$1" = starttls ]; then echo "$TLS_LEVEL"; else echo none; fi
}

RCPT_ARGS=()
for ((i = 1; i <= RECIPIENTS; i++)); do RCPT_ARGS+=(--to "rcpt$i@$SINK_DOMAIN"); done
# The same load for both senders: plaintext SMTP from 127.0.0.1, no AUTH (both relay for
# 127.0.0.0/8), 10 messages per connection. Injection speed is not measured.
inject() { # port json-out
    local rc=0
    "$HATO_LOAD" --server "127.0.0.1:$1" --messages "$MESSAGES" --concurrency "$INJECT_CONCURRENCY" \
        --size "$SIZE" --messages-per-connection 10 --from "$SENDER" "${RCPT_ARGS[@]}" --json >"$2" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$2" >&2; return 1; }
}

# Waits until the sink counted $1 more messages than $2 and $3 (a command) says the
# sender's queue is empty; sets SINK_S (seconds to the last message at the sink) and
# DRAIN_S (to the empty queue), both from $4.
wait_drained() { # expected base empty-check start
    local target=$(($2 + $1)) t c
    SINK_S=; DRAIN_S=
    while :; do
        c=$(sink_count)
        t=$(now)
        if [ "$c" -ge "$target" ]; then SINK_S=$(elapsed "$4" "$t"); break; fi
        if awk -v a="$4" -v b="$t" -v l="$DRAIN_TIMEOUT" 'BEGIN { exit !(b - a > l) }'; then
            say "WARNING: timed out after ${DRAIN_TIMEOUT}s: the sink has $((c - $2))/$1 messages"
            return 1
        fi
        sleep 0.02
    done
    while ! $3; do
        t=$(now)
        if awk -v a="$4" -v b="$t" -v l="$DRAIN_TIMEOUT" 'BEGIN { exit !(b - a > l) }'; then
            say "WARNING: timed out after ${DRAIN_TIMEOUT}s: the sender's queue is not empty"
            return 1
        fi
        sleep 0.02
    done
    DRAIN_S=$(elapsed "$4" "$(now)")
}

cpu_ticks() { # pids… → utime+stime+cutime+cstime summed (fields 14-17 of /proc/PID/stat)
    local p total=0 f
    for p in "$@"; do
        f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        # After "pid (comm) " the fields start at 3 (state): utime is the 12th here.
        total=$((total + $(awk '{ print $12 + $13 + $14 + $15 }' <<<"$f")))
    done
    echo "$total"
}

declare -A R # results: R[sender.variant.key]

# --- hato --------------------------------------------------------------------------
run_hato() { # variant
    local v=$1 dir=$TMP/hato-$1 port level sink base start queued cpu mark
    next_port; port=$PICKED
    level=$(level_for "$v")
    sink=$(sink_port_for "$v")
    mkdir -p "$dir"
    # Keep the whole configuration in this one heredoc.
    cat >"$dir/hato.toml" <<EOF
hostname = "hato-bench.localdomain"
data_dir = "$dir/hato-data"
domains = ["example.test"]
# The injection load comes from 127.0.0.1 without AUTH (Postfix: mynetworks).
relay_networks = ["127.0.0.0/8"]

[[listener]]
protocol = "smtp"
bind = "127.0.0.1:$port"
tls = "none"

[limits]
max_connections_per_ip = $((INJECT_CONCURRENCY * 2 + 10))
max_recipients = $((RECIPIENTS + 10))

[delivery]
hold = true
# One destination: per_domain decides (Postfix: default_destination_concurrency_limit).
concurrency = $CONCURRENCY
per_domain = $CONCURRENCY
tls_policy = "$level"

[[route]]
domain = "$SINK_DOMAIN"
host = "[127.0.0.1]:$sink"
EOF
    say "hato/$v: injecting $MESSAGES messages × $RECIPIENTS recipients on hold (127.0.0.1:$port)"
    start_hato "$dir/hato.toml" "$dir/hato-inject.log" "$port"
    inject "$port" "$TMP/hato-$v-inject.json" || { tail -n 20 "$dir/hato-inject.log" >&2; die "injection into hato failed"; }
    stop_hato
    queued=$("$HATO_BIN" --config "$dir/hato.toml" queue list | grep -c "@$SINK_DOMAIN" || true)
    [ "$queued" -eq $((MESSAGES * RECIPIENTS)) ] || die "hato queued $queued recipients, expected $((MESSAGES * RECIPIENTS))"

    # Release: the same configuration without hold; timed from the start of the process.
    sed -i 's/^hold = true$/hold = false/' "$dir/hato.toml"
    base=$(sink_count)
    mark=$(sink_mark "$v")
    say "hato/$v: delivering (tls_policy $level, per_domain $CONCURRENCY) to 127.0.0.1:$sink"
    start=$(now)
    "$HATO_BIN" serve --config "$dir/hato.toml" >"$dir/hato.log" 2>&1 &
    HATO_PID=$!
    if [ "$PERF" = 1 ]; then
        perf record -F 999 -g -p "$HATO_PID" -o "$TMP/hato-$v.perf.data" >/dev/null 2>&1 &
        PERF_PID=$!
    fi
    hato_empty() { "$HATO_BIN" --config "$dir/hato.toml" queue list 2>/dev/null | grep -q '^the queue is empty'; }
    wait_drained "$MESSAGES" "$base" hato_empty "$start" || { tail -n 20 "$dir/hato.log" >&2; }
    cpu=$(cpu_ticks "$HATO_PID")
    if [ -n "$PERF_PID" ]; then
        kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true; PERF_PID=
        say "hato/$v: perf data in $TMP/hato-$v.perf.data (KEEP=1 keeps it)"
    fi
    stop_hato
    R[hato.$v.sink_s]=$SINK_S
    R[hato.$v.drain_s]=$DRAIN_S
    R[hato.$v.cpu_s]=$(awk -v t="$cpu" -v h="$TICKS" 'BEGIN { printf "%.2f", t / h }')
    R[hato.$v.delivered]=$(($(sink_count) - base))
    read -r "R[hato.$v.sessions]" "R[hato.$v.tls_sessions]" "R[hato.$v.tls_messages]" <<<"$(sink_sessions "$v" "$mark")"
    # The per-attempt log lines: recipients that got 250.
    R[hato.$v.ok_rcpts]=$(grep 'delivery attempt' "$dir/hato.log" | grep -c 'result=250' || true)
}

# --- Postfix -----------------------------------------------------------------------
run_postfix() { # variant
    local v=$1 dir=$TMP/postfix-$1 port level sink base start held master cpu0 cpu1 mark
    next_port; port=$PICKED
    level=$(level_for "$v")
    sink=$(sink_port_for "$v")
    postfix_instance "$dir" "$port" "myhostname = postfix-bench.localdomain
smtpd_relay_restrictions = permit_mynetworks, reject
# Everything for $SINK_DOMAIN to the sink; nothing can leave this machine.
transport_maps = inline:{ $SINK_DOMAIN=smtp:[127.0.0.1]:$sink }
default_transport = error:5.7.1 benchmark instance delivers to the sink only
relay_transport = error:5.7.1 benchmark instance delivers to the sink only
# Injection: every message goes to the hold queue (released before the timed part).
smtpd_recipient_restrictions = check_client_access static:HOLD
smtpd_tls_security_level = none
# One destination: this is hato's per_domain (also Postfix's default, 20).
default_destination_concurrency_limit = $CONCURRENCY
default_process_limit = $((CONCURRENCY > 90 ? CONCURRENCY + 10 : 100))
smtp_tls_security_level = $level
smtp_tls_loglevel = 1
# As in Debian's default main.cf: TLS sessions are resumed (hato: rustls in memory).
smtp_tls_session_cache_database = btree:\${data_directory}/smtp_scache
${POSTFIX_MAINCF_EXTRA:-}"
    say "postfix/$v: $(postconf -d -h mail_version), injecting $MESSAGES messages × $RECIPIENTS recipients on hold (127.0.0.1:$port)"
    inject "$port" "$TMP/postfix-$v-inject.json" || { tail -n 20 "$dir/maillog" >&2; die "injection into postfix failed"; }
    # 250 from smtpd means cleanup wrote the queue file (into hold): wait for all of them.
    for _ in $(seq 300); do
        held=$(find "$dir/queue/hold" -type f | wc -l)
        [ "$held" -ge "$MESSAGES" ] && break
        sleep 0.1
    done
    [ "$held" -eq "$MESSAGES" ] || die "postfix holds $held messages, expected $MESSAGES (log: $dir/maillog)"

    master=$(tr -d ' ' <"$dir/queue/pid/master.pid")
    postfix_tree() { echo "$master"; ps -o pid= --ppid "$master"; }
    cpu0=$(cpu_ticks $(postfix_tree))
    base=$(sink_count)
    mark=$(sink_mark "$v")
    say "postfix/$v: delivering (smtp_tls_security_level $level, destination concurrency $CONCURRENCY) to 127.0.0.1:$sink"
    start=$(now)
    postsuper -c "$dir/etc" -H ALL 2>/dev/null
    postqueue -c "$dir/etc" -f
    postfix_empty() { postqueue -c "$dir/etc" -p 2>/dev/null | grep -q 'Mail queue is empty'; }
    wait_drained "$MESSAGES" "$base" postfix_empty "$start" || { tail -n 20 "$dir/maillog" >&2; }
    # The master's cutime/cstime include the daemons that exited meanwhile.
    cpu1=$(cpu_ticks $(postfix_tree))
    postfix_stop "$dir/etc"
    unset 'POSTFIX_UP[${#POSTFIX_UP[@]}-1]'
    R[postfix.$v.sink_s]=$SINK_S
    R[postfix.$v.drain_s]=$DRAIN_S
    R[postfix.$v.cpu_s]=$(awk -v t="$((cpu1 - cpu0))" -v h="$TICKS" 'BEGIN { printf "%.2f", t / h }')
    R[postfix.$v.delivered]=$(($(sink_count) - base))
    read -r "R[postfix.$v.sessions]" "R[postfix.$v.tls_sessions]" "R[postfix.$v.tls_messages]" <<<"$(sink_sessions "$v" "$mark")"
    R[postfix.$v.ok_rcpts]=$(grep -c ' status=sent ' "$dir/maillog" || true)
}

# --- run and report ----------------------------------------------------------------
for v in $VARIANTS; do
    [ "$ONLY" = postfix ] || run_hato "$v"
    [ "$ONLY" = hato ] || run_postfix "$v"
done

get() { echo "${R[$1]:--}"; }
rate() { # seconds → messages/s
    awk -v n="$MESSAGES" -v s="$1" 'BEGIN { if (s == "-" || s == "" || s + 0 == 0) print "-"; else printf "%.1f", n / s }'
}
per_msg_ms() { # cpu seconds → ms per message
    awk -v n="$MESSAGES" -v s="$1" 'BEGIN { if (s == "-" || s == "") print "-"; else printf "%.2f", s * 1000 / n }'
}
ratio() { # hato postfix
    awk -v h="$1" -v p="$2" 'BEGIN { if (h == "-" || p == "-" || h == "" || p == "" || p + 0 == 0) print "-"; else printf "%.2f", h / p }'
}
row() { printf '  %-34s %12s %12s %14s\n' "$@"; }

echo
echo "Outbound delivery: $MESSAGES messages × $RECIPIENTS recipient(s) at $SINK_DOMAIN, ~$SIZE B, concurrency $CONCURRENCY per destination"
row "" hato postfix hato/postfix
for v in $VARIANTS; do
    hr=$(rate "$(get "hato.$v.drain_s")"); pr=$(rate "$(get "postfix.$v.drain_s")")
    tls=$([ "$v" = starttls ] && echo "STARTTLS ($TLS_LEVEL)" || echo "plaintext")
    echo "  -- $tls"
    row "msgs/s (to empty queue)" "$hr" "$pr" "$(ratio "$hr" "$pr")"
    hs=$(rate "$(get "hato.$v.sink_s")"); ps_=$(rate "$(get "postfix.$v.sink_s")")
    row "msgs/s (to last msg at sink)" "$hs" "$ps_" "$(ratio "$hs" "$ps_")"
    row "seconds to empty queue" "$(get "hato.$v.drain_s")" "$(get "postfix.$v.drain_s")" ""
    hc=$(get "hato.$v.cpu_s"); pc=$(get "postfix.$v.cpu_s")
    row "sender CPU s" "$hc" "$pc" "$(ratio "$hc" "$pc")"
    row "sender CPU ms per message" "$(per_msg_ms "$hc")" "$(per_msg_ms "$pc")" ""
    row "messages at the sink" "$(get "hato.$v.delivered")" "$(get "postfix.$v.delivered")" ""
    row "recipients with 250 (sender log)" "$(get "hato.$v.ok_rcpts")" "$(get "postfix.$v.ok_rcpts")" ""
    row "connections to the sink" "$(get "hato.$v.sessions")" "$(get "postfix.$v.sessions")" ""
    if [ "$v" = starttls ]; then
        row "  of which STARTTLS" "$(get "hato.$v.tls_sessions")" "$(get "postfix.$v.tls_sessions")" ""
        row "messages over STARTTLS" "$(get "hato.$v.tls_messages")" "$(get "postfix.$v.tls_messages")" ""
    fi
done
echo
echo "  msgs/s: higher is better; hato/postfix > 1 means hato delivered faster. CPU: lower is better."
echo "  Timing: hato from the start of its process (scheduler start-up included), Postfix from"
echo "  'postsuper -H ALL; postqueue -f' (already running), to the sender's queue being empty."
echo "  Same sink, same concurrency for one destination (hato per_domain = Postfix"
echo "  default_destination_concurrency_limit = $CONCURRENCY); Postfix CPU = master + all its daemons."
echo "  STARTTLS: smtp-sink behind a Postfix smtpd (smtpd_proxy_filter) that terminates TLS."
echo "  Raw data: $( [ "$KEEP" = 1 ] && echo "kept in $TMP" || echo "rerun with --keep to keep logs and queues")."
