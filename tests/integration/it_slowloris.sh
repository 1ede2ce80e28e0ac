#!/usr/bin/env bash
# Integration: a distributed slowloris on the HTTPS API (T10-L1a, T10-L1b).
# Five source addresses (127.0.0.2-6) hold 56 TLS connections each, every
# one a request head that never ends: one more header line every 0.5 s, so
# libmicrohttpd's idle timeout never fires, and together more than the
# global connection cap (256). While the attack runs, a legitimate client
# must be answered within 1 s, on an authenticated endpoint and on health.
# Then: a dribbled head is cut at the head deadline, a body below the
# minimum rate is cut, a slow body above it is served, and a connection
# whose request authenticated is not shed by a burst of unauthenticated
# ones (an unauthenticated idle one is).
. "$(dirname "$0")/lib.sh"

HEAD_S=4     # --api-head-timeout for this test (default 10)
RATE=200     # --api-min-body-rate, bytes/s (default 500)
ATTACK_S=45  # the attack stops by itself after this long at most

cat >"$T/slow.py" <<'PY'
# slow.py MODE ...: the attacker and probes of it_slowloris.sh. Every loop
# is bounded in count and time; the only network is loopback.
import json, os, select, socket, ssl, sys, threading, time

def tls(host, port, ca, src, timeout=10):
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection((host, port), timeout=timeout, source_address=(src, 0))
    try:
        return ctx.wrap_socket(raw, server_hostname=host)
    except Exception:
        raw.close()
        raise

def closed_within(s, secs):
    """True when the server closes s within secs (no data expected)."""
    r, _, _ = select.select([s], [], [], secs)
    if not r:
        return False
    try:
        return s.recv(4096) == b""
    except Exception:
        return True

def read_response(s, limit=10.0):
    """The status code of one response read whole, or None if closed."""
    buf, end = b"", time.monotonic() + limit
    try:
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > end:
                return None
            d = s.recv(4096)
            if not d:
                return None
            buf += d
        head, body = buf.split(b"\r\n\r\n", 1)
        n = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v.strip())
        while len(body) < n:
            d = s.recv(4096)
            if not d:
                return None
            body += d
        return int(head.split(b" ")[1])
    except Exception:
        return None

def attack(host, port, ca, status, stop, duration, per_addr, addrs):
    """per_addr threads per source address, each holding one never-ending
    head and opening a new one when the server cuts it."""
    st = {"started": 0, "open": 0, "opened": 0, "closed": 0, "max_life": 0.0}
    since = {}   # thread -> when its open connection started
    lock = threading.Lock()
    halt = threading.Event()
    deadline = time.monotonic() + duration

    def worker(src):
        first = True
        while not halt.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                s = tls(host, port, ca, src, timeout=5)
                s.sendall(b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\n")
            except Exception:
                s = None
            with lock:
                st["started"] += first
                first = False
                if s:
                    st["opened"] += 1
                    st["open"] += 1
                    since[threading.get_ident()] = t0
            if not s:
                halt.wait(0.2)
                continue
            i = 0
            while not halt.is_set() and time.monotonic() < deadline:
                if closed_within(s, 0.5):
                    break
                i += 1
                try:
                    s.sendall(b"X-Pad-%d: %d\r\n" % (i, i))
                except Exception:
                    break
            else:
                s.close()
                with lock:
                    st["open"] -= 1
                    since.pop(threading.get_ident(), None)
                return
            life = time.monotonic() - t0
            s.close()
            with lock:
                st["open"] -= 1
                since.pop(threading.get_ident(), None)
                st["closed"] += 1
                st["max_life"] = max(st["max_life"], life)
            halt.wait(0.2)

    threads = [threading.Thread(target=worker, args=(a,), daemon=True)
               for a in addrs for _ in range(per_addr)]
    for t in threads:
        t.start()
    while time.monotonic() < deadline and os.path.exists(stop):
        with lock:
            now = time.monotonic()
            st["max_life"] = max([st["max_life"]] + [now - t for t in since.values()])
            snap = dict(st)
        with open(status + ".tmp", "w") as f:
            json.dump(snap, f)
        os.replace(status + ".tmp", status)
        time.sleep(0.2)   # status cadence of the attacker, not a wait
    halt.set()
    for t in threads:
        t.join(10)

def slow_head(host, port, ca, src):
    """A head dribbled one line per 0.5 s: prints its life in seconds."""
    t0 = time.monotonic()
    s = tls(host, port, ca, src)
    s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
    for i in range(120):                     # at most 60 s
        if closed_within(s, 0.5):
            print("%.2f" % (time.monotonic() - t0))
            return
        s.sendall(b"X-Pad-%d: %d\r\n" % (i, i))
    print("open")

def body(host, port, ca, src, total, chunk):
    """A body of total bytes, chunk bytes every 0.5 s: prints
    'answered CODE SECONDS' or 'closed SECONDS' (from the head's end)."""
    s = tls(host, port, ca, src)
    s.sendall(b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % total)
    t0, sent = time.monotonic(), 0
    while sent < total and time.monotonic() - t0 < 60:
        if closed_within(s, 0.5):
            print("closed %.2f" % (time.monotonic() - t0))
            return
        n = min(chunk, total - sent)
        try:
            s.sendall(b"a" * n)
        except Exception:
            print("closed %.2f" % (time.monotonic() - t0))
            return
        sent += n
    code = read_response(s)
    dt = time.monotonic() - t0
    print("answered %s %.2f" % (code, dt) if code else "closed %.2f" % dt)

def keepalive(host, port, ca, token, burst, addrs):
    """A keep-alive connection whose request authenticated and one whose
    request did not, both idle; then burst connections with heads that
    never end; then a second request on each: prints 'A=... B=...'."""
    a = tls(host, port, ca, "127.0.0.1")
    b = tls(host, port, ca, "127.0.0.1")
    me = b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % token.encode()
    health = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    b.sendall(health)
    rb = read_response(b)
    a.sendall(me)
    ra = read_response(a)
    held = []
    for i in range(burst):
        try:
            s = tls(host, port, ca, addrs[i % len(addrs)], timeout=5)
            s.sendall(b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
        except Exception:
            pass
    out = []
    for name, s, req, first in (("A", a, me, ra), ("B", b, health, rb)):
        try:
            s.sendall(req)
            code = read_response(s, 5)
        except Exception:
            code = None
        out.append("%s=%s/%s" % (name, first, code if code else "closed"))
    print(" ".join(out), "held=%d" % len(held))
    for s in held:
        s.close()

m = sys.argv[1]
host, port, ca = sys.argv[2], int(sys.argv[3]), sys.argv[4]
if m == "attack":
    attack(host, port, ca, sys.argv[5], sys.argv[6], float(sys.argv[7]), int(sys.argv[8]),
           sys.argv[9:])
elif m == "slowhead":
    slow_head(host, port, ca, sys.argv[5])
elif m == "body":
    body(host, port, ca, sys.argv[5], int(sys.argv[6]), int(sys.argv[7]))
elif m == "keepalive":
    keepalive(host, port, ca, sys.argv[5], int(sys.argv[6]), sys.argv[7:])
PY

hub_start "$T/data" --api-head-timeout $HEAD_S --api-min-body-rate $RATE
fleet_setup 0 || { bad "fleet setup"; finish; exit 1; }
ADM=$(token_of admin)
HP=${API#https://}; HOST=${HP%:*}; PORT=${HP##*:}
slow() { timeout 90 python3 "$T/slow.py" "$1" "$HOST" "$PORT" "$CA" "${@:2}"; }
api_stat() { curl -s -m 5 --cacert "$CA" "$API/api/v1/health" | jget "api.$1"; }
st() { [ -f "$T/status" ] && jget "$1" <"$T/status"; }

# --- the attack: 5 addresses x 56 never-ending heads (280 > 256)
touch "$T/attacking"
python3 "$T/slow.py" attack "$HOST" "$PORT" "$CA" "$T/status" "$T/attacking" $ATTACK_S 56 \
    127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5 127.0.0.6 &
ATTACKER=$!
PIDS+=("$ATTACKER")
# every attacker thread has connected once and over 150 heads are held open
attack_up() { [ "$(st started)" -ge 280 ] 2>/dev/null && [ "$(st open)" -ge 150 ] 2>/dev/null; }
check "the attack holds over 150 connections from 5 addresses" wait_for 30 attack_up
echo "# attacker: $(cat "$T/status" 2>/dev/null)"

# a legitimate client, measured while the attack runs: within 1 s, every time
timed() { curl -s -o /dev/null -w '%{http_code} %{time_total}' -m 5 --cacert "$CA" "$@"; }
under1() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 1.0 else 1)' "$1"; }
slow_n=0; worst=0
for _ in 1 2 3 4 5; do
    for ep in me health; do
        auth=()
        [ "$ep" = me ] && auth=(-H "Authorization: Bearer $ADM")
        r=$(timed "${auth[@]}" "$API/api/v1/$ep")
        code=${r% *}; t=${r#* }
        worst=$(python3 -c "print(max($worst, $t))")
        if [ "$code" != 200 ] || ! under1 "$t"; then
            slow_n=$((slow_n + 1)); echo "# $ep under attack: HTTP $code in ${t}s"
        fi
    done
done
expect_eq "under attack, /me and /health answer 200 within 1 s (10 tries, worst ${worst}s)" 0 "$slow_n"
open_n=$(st open)
check "the attack was still holding connections while measured (${open_n} open)" \
    test "${open_n:-0}" -ge 100
shed=$(api_stat shed)
check "unauthenticated heads over the cap were shed (shed=${shed:-none})" test "${shed:-0}" -gt 0
max_life=$(st max_life)
check "no attack connection lived past the head deadline + 3 s, closed or open (max ${max_life}s)" \
    python3 -c "import sys; sys.exit(0 if ${max_life:-999} < $HEAD_S + 3 else 1)"
rm -f "$T/attacking"
wait "$ATTACKER"

# --- deadlines, one connection at a time
h0=$(api_stat head_timeouts); b0=$(api_stat slow_bodies)
life=$(slow slowhead 127.0.0.7)
check "a dribbled head is closed at the ${HEAD_S} s head deadline (after ${life}s)" \
    python3 -c "import sys; sys.exit(0 if '$life' != 'open' and $HEAD_S - 0.5 <= float('$life') <= $HEAD_S + 2 else 1)"
check "the head timeout is counted" test "$(api_stat head_timeouts)" -gt "${h0:-0}"
r=$(slow body 127.0.0.7 20000 10)   # 20 B/s, below $RATE B/s
check "a body below $RATE B/s is cut after its grace ($r)" \
    python3 -c "import sys; w=sys.argv[1].split(); sys.exit(0 if w[0]=='closed' and $HEAD_S - 0.5 <= float(w[1]) <= $HEAD_S + 3 else 1)" "$r"
check "the slow body is counted" test "$(api_stat slow_bodies)" -gt "${b0:-0}"
r=$(slow body 127.0.0.7 3000 150)   # 300 B/s for 10 s: slow but above the rate
check "a slow body above $RATE B/s is served ($r)" \
    python3 -c "import sys; w=sys.argv[1].split(); sys.exit(0 if w[0]=='answered' and float(w[2]) > $HEAD_S else 1)" "$r"

# --- a connection whose request authenticated keeps its place
hub_stop
hub_start "$T/data" --api-connections 40 --api-unauth-connections 30 --api-head-timeout 30
HP=${API#https://}; PORT=${HP##*:}
r=$(slow keepalive "$ADM" 40 127.0.0.2 127.0.0.3)
echo "# keep-alive: $r"
check "after a burst of 40 heads, the authenticated idle connection is still served ($r)" \
    bash -c "[[ '$r' == *'A=200/200'* ]]"
check "the unauthenticated idle connection was shed ($r)" bash -c "[[ '$r' == *'B=200/closed'* ]]"
check "the burst went over the cap of 30 ($r)" bash -c "[ '${r##*held=}' -gt 30 ]"
expect_eq "--api-unauth-connections at the global cap is refused" 2 \
    "$("$BIN/mamorid" --data "$T/x" --api-connections 10 --api-unauth-connections 10 >/dev/null 2>&1; echo $?)"
expect_eq "--api-head-timeout 0 is refused" 2 \
    "$("$BIN/mamorid" --data "$T/x" --api-head-timeout 0 >/dev/null 2>&1; echo $?)"
expect_eq "hub still healthy" ok "$(curl -s --cacert "$CA" "$API/api/v1/health" | jget status)"
finish
