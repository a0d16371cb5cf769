#!/usr/bin/env bash
# bench/hardening.sh: how hato holds up when strangers push (issue 10's figures), one fresh
# hato per probe, all on loopback:
#   inflight  SENDERS clients each send a SIZE_MIB MiB message on port 25 at once: RSS growth
#             (peak VmHWM minus RSS before).
#   auth      GUESSES wrong AUTH PLAIN at once on 465 for one account, each from another /24:
#             passwords checked (535) vs refused unchecked (454), RSS growth, and whether the
#             owner (who logged in from 127.0.0.1 before) still gets in.
#   flood     IDLE connections to port 25 from IDLE addresses, held open: seconds for a
#             submission (465) and an IMAP (993) login.
#   append    SENDERS IMAP sessions of the one account each APPEND a SIZE_MIB MiB message at once
#             (imaps): how many were stored, RSS growth.
# Usage: bench/hardening.sh [--senders 40] [--size-mib 24] [--guesses 100] [--idle 1500]
#        [--probes "inflight auth flood append"] [--keep]
# HATO_BIN=path/to/hato compares another build (default: target/release/hato).
set -euo pipefail
BENCH=hardening.sh
OTHER=none
source "$(dirname "$0")/lib.sh"
HATO_PID=
bench_args "senders=40 size-mib=24 guesses=100 idle=1500 probes=inflight_auth_flood_append" "$@"
PROBES=${PROBES//_/ }
[ -x "$HATO_BIN" ] || die "no hato binary at $HATO_BIN: cargo build --release -p hato"
command -v python3 >/dev/null || die "python3 is needed: apt-get install python3"
require_ss
[ "$(ulimit -n)" -gt $((IDLE + 200)) ] || ulimit -n $((IDLE + 1000)) 2>/dev/null \
    || die "raise the open-file limit above $((IDLE + 200)) (ulimit -n)"
bench_tmp hato-hardening "the store's fsyncs cost nothing there"
on_exit cleanup
cleanup() { stop_hato 50; remove_tmp "the hato data and logs"; }

# start_probe NAME: a fresh hato with smtp (25), submissions (465) and imaps (993) listeners.
start_probe() {
    local dir=$TMP/$1
    mkdir -p "$dir"
    SMTP=$(pick_port 12525); SUBS=$(pick_port 12465); IMAPS=$(pick_port 12993)
    cat >"$dir/hato.toml" <<EOF
hostname = "localhost"
data_dir = "$dir/hato-data"
domains = ["example.test"]
[delivery]
hold = true
[[listener]]
protocol = "smtp"
bind = "127.0.0.1:$SMTP"
tls = "none"
greeting_delay_ms = 0
[[listener]]
protocol = "submission"
bind = "127.0.0.1:$SUBS"
tls = "implicit"
[[listener]]
protocol = "imap"
bind = "127.0.0.1:$IMAPS"
tls = "implicit"
[limits]
max_message_size = $(( (SIZE_MIB + 1) * 1048576 ))
EOF
    hato_user "$dir/hato.toml"
    start_hato "$dir/hato.toml" "$dir/hato.log" "$SMTP"
    RSS_BEFORE=$(awk '/^VmRSS/ {print $2}' "/proc/$HATO_PID/status")
}

# growth: peak RSS since start minus RSS before the probe, MiB.
growth() {
    awk -v before="$RSS_BEFORE" '/^VmHWM/ {printf "%.0f", ($2 - before) / 1024}' "/proc/$HATO_PID/status"
}

probe() { # python script, then its arguments
    python3 - "$@" <<EOF
import socket, ssl, smtplib, imaplib, sys, time, threading, base64
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def src(i):
    return ("127.%d.%d.1" % (1 + i // 250, i % 250), 0)
$PROBE
EOF
}

for p in $PROBES; do
    case $p in
    inflight)
        start_probe inflight
        PROBE='
n, size, port, rcpt = int(sys.argv[1]), int(sys.argv[2]) << 20, int(sys.argv[3]), sys.argv[4]
line = b"x" * 998 + b"\r\n"
body = b"Subject: big\r\n\r\n" + line * (size // len(line))
codes = []
def send(i):
    c = smtplib.SMTP("127.0.0.1", port, timeout=300, source_address=src(i))
    codes.append(c.sendmail("s%d@outside.example" % i, [rcpt], body)); c.quit()
ts = [threading.Thread(target=send, args=(i,)) for i in range(n)]
[t.start() for t in ts]; [t.join() for t in ts]
print("accepted", len(codes))'
        say "inflight: $SENDERS senders x $SIZE_MIB MiB on port 25"
        probe "$SENDERS" "$SIZE_MIB" "$SMTP" "$BENCH_USER"
        echo "inflight_rss_growth_mib $(growth)"
        stop_hato 100
        ;;
    auth)
        start_probe auth
        PROBE='
port, user, pw, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
def login(password, source=None):
    c = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=60, source_address=source)
    c.ehlo("client.example")
    cred = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
    code, _ = c.docmd("AUTH", "PLAIN " + cred)
    try: c.quit()
    except Exception: pass
    return code
login(pw)
codes = []
ts = [threading.Thread(target=lambda i=i: codes.append(login("guess%d" % i, src(i)))) for i in range(n)]
[t.start() for t in ts]; [t.join() for t in ts]
print("auth_checked", codes.count(535))
print("auth_refused_unchecked", codes.count(454))
print("owner_after", login(pw))'
        say "auth: $GUESSES concurrent wrong passwords for one account"
        probe "$SUBS" "$BENCH_USER" "$BENCH_PASSWORD" "$GUESSES"
        echo "auth_rss_growth_mib $(growth)"
        stop_hato 100
        ;;
    flood)
        start_probe flood
        PROBE='
smtp, subs, imaps, n, user, pw = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
flood = []
for i in range(n):
    try: flood.append(socket.create_connection(("127.0.0.1", smtp), timeout=10, source_address=src(i)))
    except OSError: pass
time.sleep(1)
def timed(f):
    t = time.time()
    try: f(); return "%.2f" % (time.time() - t)
    except Exception as e: return "failed(%s)" % type(e).__name__
def sub():
    c = smtplib.SMTP_SSL("127.0.0.1", subs, context=ctx, timeout=10); c.login(user, pw); c.quit()
def imap():
    m = imaplib.IMAP4_SSL("127.0.0.1", imaps, ssl_context=ctx, timeout=10); m.login(user, pw); m.logout()
print("flood_connections", len(flood))
print("flood_submission_login_s", timed(sub))
print("flood_imap_login_s", timed(imap))'
        say "flood: $IDLE idle connections to port 25, then logins"
        probe "$SMTP" "$SUBS" "$IMAPS" "$IDLE" "$BENCH_USER" "$BENCH_PASSWORD"
        stop_hato 100
        ;;
    append)
        start_probe append
        PROBE='
n, size, port, user, pw = int(sys.argv[1]), int(sys.argv[2]) << 20, int(sys.argv[3]), sys.argv[4], sys.argv[5]
line = b"x" * 998 + b"\r\n"
body = b"Subject: big\r\n\r\n" + line * (size // len(line))
stored = []
class From(imaplib.IMAP4_SSL):  # each session from its own address (the per-address limit)
    def __init__(self, source, *a, **k):
        self.source = source
        super().__init__(*a, **k)
    def _create_socket(self, timeout):
        s = socket.create_connection((self.host, self.port), timeout, source_address=self.source)
        return self.ssl_context.wrap_socket(s, server_hostname=self.host)
def append(i):
    m = From(src(i), "127.0.0.1", port, ssl_context=ctx, timeout=300)
    m.login(user, pw)
    typ, _ = m.append("INBOX", None, None, body)
    stored.append(typ)
    m.logout()
ts = [threading.Thread(target=append, args=(i,)) for i in range(n)]
[t.start() for t in ts]; [t.join() for t in ts]
print("append_stored", stored.count("OK"))'
        say "append: $SENDERS IMAP APPENDs x $SIZE_MIB MiB at once"
        probe "$SENDERS" "$SIZE_MIB" "$IMAPS" "$BENCH_USER" "$BENCH_PASSWORD"
        echo "append_rss_growth_mib $(growth)"
        stop_hato 100
        ;;
    *) usage_error "unknown probe $p (inflight, auth, flood, append)" ;;
    esac
done
