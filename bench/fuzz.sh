#!/usr/bin/env bash
# Fuzzes the daemon's API with schemathesis, from the OpenAPI document it serves, over both
# listeners: the Unix socket (through a TCP relay: schemathesis speaks TCP only) and the TLS
# port (with a bearer token). Checks: no 5xx, and every response matches its documented schema.
#
#   bash bench/fuzz.sh [--max-time S] [--max-examples N] [--checks LIST] [--seed N]
#   bash bench/fuzz.sh --smoke    # 3 examples, 5 s per listener: checks that it still runs
#
# Fuzzed start requests do start scans, and fuzzed targets include hostnames, so the daemon is
# fenced in: it runs in the scanner namespace of a lab of its own (prefix nsf), whose only routes
# are the lab's and whose resolver is the lab's dnsmasq (which asks no one else); its policy
# allows only 198.18.0.0/15, at most 256 addresses and 2000 probes/s per scan. Real scan ids and
# lab targets are mixed into generated requests (schemathesis hooks), so the fuzzer gets past
# 404 and the policy. The lab and the daemon are torn down on every exit, Ctrl-C included.
# PYTHON names the interpreter that has netscand and schemathesis (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."

max_time= max_examples= smoke=
checks=not_a_server_error,response_schema_conformance
seed=$RANDOM
while [ $# -gt 0 ]; do
    case "$1" in
        --max-time) max_time=$2; shift 2 ;;
        --max-examples) max_examples=$2; shift 2 ;;
        --checks) checks=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --smoke) smoke=1; shift ;;
        *) echo "usage: $0 [--max-time S] [--max-examples N] [--checks LIST] [--seed N] [--smoke]" >&2; exit 2 ;;
    esac
done
# The defaults, or the smoke's smallest sizes; a size given on the command line wins either way.
# The smoke runs schemathesis in one thread: Python 3.11's ast.parse, which hypothesis calls to
# describe its strategies, can fail with a spurious "AST constructor recursion depth mismatch"
# when two threads parse at once (CPython gh-106905, fixed in later releases), and CI must not flake.
if [ -n "$smoke" ]; then
    max_time=${max_time:-5} max_examples=${max_examples:-3} workers=1
else
    max_time=${max_time:-300} max_examples=${max_examples:-500} workers=2  # per listener; per operation and phase
fi

py=${PYTHON:-python3}
"$py" -c 'import netscand, schemathesis' 2>/dev/null || {
    echo "fuzz.sh: $py lacks netscand or schemathesis: pip install -e '.[test]', or set PYTHON" >&2; exit 2; }
prefix=nsf
ns=$prefix-scan
port=8443
work=$(mktemp -d /tmp/netscand-fuzz.XXXXXX)
chmod 0755 "$work"  # the daemon drops to its own user, which must reach its state dir
state=$work/state
sock=$work/netscand.sock
daemon_pid= relay_pid=

cleanup() {
    set +e  # on every path out, a failed step (a daemon already dead) must not skip the rest
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null
    if [ -n "$daemon_pid" ]; then
        kill "$daemon_pid" 2>/dev/null  # SIGTERM: the daemon stops its children and cancels scans
        wait "$daemon_pid" 2>/dev/null
    fi
    "$py" -m netscand lab down --prefix "$prefix" >/dev/null 2>&1 || true  # kills what is left in it
    if [ -n "${FUZZ_KEEP:-}" ]; then cp -r "$work" "$FUZZ_KEEP"; fi  # for a post-mortem
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$py" -m netscand lab up --prefix "$prefix" --hosts "$([ -n "$smoke" ] && echo 3 || echo 4)" >/dev/null
cat >"$work/netscand.toml" <<EOF
[engine]
rate = 2000
[daemon]
max_running_scans = 2
log_format = "json"
[policy]
allowed_targets = ["198.18.0.0/15"]
max_target_addresses = 256
max_rate = 2000.0
EOF
mkdir -m 0700 "$state"
ip netns exec "$ns" "$py" -m netscand serve --config "$work/netscand.toml" --state-dir "$state" \
    --socket "$sock" --listen "127.0.0.1:$port" --workers 2 >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 200); do
    curl -sf --unix-socket "$sock" http://netscand/healthz >/dev/null 2>&1 && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
    sleep 0.1
done
token=$("$py" -m netscand token create --name fuzz --scope admin --state-dir "$state")

# Values worth mixing in: lab targets, and real scans (one done, one running slowly, one cancelled).
api() { curl -sf --unix-socket "$sock" -H 'Content-Type: application/json' "$@"; }
hosts=$(jq -r '.hosts[].ip' "/run/netscand-lab/$prefix.json")
h1=$(sed -n 1p <<<"$hosts") h2=$(sed -n 2p <<<"$hosts") h3=$(sed -n 3p <<<"$hosts")
done_id=$(api -d "{\"target\": \"$h1\", \"profile\": \"custom\", \"ports\": [22]}" \
    http://netscand/api/v1/scans/start | jq -r .id)
slow_id=$(api -d "{\"target\": \"$h2\", \"profile\": \"custom\", \"ports\": [\"1-65535\"], \"rate\": 200}" \
    http://netscand/api/v1/scans/start | jq -r .id)
stop_id=$(api -d "{\"target\": \"$h3\", \"profile\": \"quick\"}" http://netscand/api/v1/scans/start | jq -r .id)
api -X POST "http://netscand/api/v1/scans/$stop_id/stop" >/dev/null
export FUZZ_SCAN_IDS="$done_id $slow_id $stop_id" FUZZ_TARGETS="[\"$h1\", \"$h2/30\", [\"$h2\", \"$h3\"]]"
cat >"$work/fuzz_hooks.py" <<'EOF'
import json, os

import schemathesis
from hypothesis import strategies as st

IDS = os.environ["FUZZ_SCAN_IDS"].split()
TARGETS = json.loads(os.environ["FUZZ_TARGETS"])


@schemathesis.hook
def flatmap_path_parameters(context, parameters):
    if not parameters or "scan_id" not in parameters:
        return st.just(parameters)
    return st.sampled_from([parameters, *({**parameters, "scan_id": i} for i in IDS)])


@schemathesis.hook
def flatmap_body(context, body):
    if not isinstance(body, dict) or "target" not in body:
        return st.just(body)
    return st.sampled_from([body, *({**body, "target": t} for t in TARGETS)])
EOF
export PYTHONPATH=$work${PYTHONPATH:+:$PYTHONPATH} SCHEMATHESIS_HOOKS=fuzz_hooks

# The Unix socket through 127.0.0.1: a relay that opens one socket connection per TCP one.
"$py" - "$sock" >"$work/relay.port" <<'EOF' &
import asyncio, sys

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()

async def relay(client_r, client_w):
    try:
        daemon_r, daemon_w = await asyncio.open_unix_connection(sys.argv[1])
    except OSError:  # the daemon is gone: the fuzzer says so itself
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, daemon_w), pipe(daemon_r, client_w), return_exceptions=True)

async def main():
    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
EOF
relay_pid=$!
for _ in $(seq 50); do [ -s "$work/relay.port" ] && break; sleep 0.1; done
relay_port=$(cat "$work/relay.port")

fuzz() {  # name url [schemathesis options]; FUZZ_IN runs it (in a namespace), if set
    local name=$1 url=$2
    shift 2
    # In the work dir: schemathesis keeps a cache of crashes in .schemathesis/ where it runs.
    (cd "$work" && ${FUZZ_IN:-} "$py" -m schemathesis.cli run "$url/api/v1/openapi.json" --url "$url" --checks "$checks" \
        --max-time "$max_time" --max-examples "$max_examples" --seed "$seed" --workers "$workers" \
        --request-timeout 30 --generation-database none --no-color \
        --report ndjson --report-ndjson-path "$work/$name.ndjson" \
        "$@") >"$work/$name.out" 2>&1 && echo 0 >"$work/$name.rc" || echo $? >"$work/$name.rc"
}

echo "fuzzing for up to ${max_time}s per listener, seed $seed, checks $checks"
started=$(date +%s)
fuzz unix "http://127.0.0.1:$relay_port"
# The TLS port lives on the scanner namespace's loopback, so its fuzzer runs in there too.
FUZZ_IN="ip netns exec $ns" fuzz tls "https://127.0.0.1:$port" --tls-verify "$state/tls/cert.pem" \
    -H "Authorization: Bearer $token"
duration=$(( $(date +%s) - started ))

alive=yes
curl -sf --unix-socket "$sock" http://netscand/healthz >/dev/null || alive=no
"$py" - "$work" "$duration" "$alive" <<'EOF'
import json, pathlib, sys
from collections import Counter

work, duration, alive = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for name in ("unix", "tls"):
    statuses, failures = Counter(), Counter()
    for line in (work / f"{name}.ndjson").read_text().splitlines():
        event = json.loads(line).get("ScenarioFinished")
        if event is None:
            continue
        recorder = event["recorder"]
        for interaction in recorder.get("interactions", {}).values():
            response = interaction.get("response")
            statuses[f"{response['status_code'] // 100}xx" if response else "no response"] += 1
        for checks in recorder.get("checks", {}).values():
            failures.update(c["name"] for c in checks if c["status"] != "success")
    rc = (work / f"{name}.rc").read_text().strip()
    print(f"{name:4}: {sum(statuses.values())} requests ({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}); "
          f"failed checks: {', '.join(f'{k} {v}' for k, v in sorted(failures.items())) or 'none'}; "
          f"schemathesis exit {rc}")
    if rc != "0":
        print("\n".join((work / f"{name}.out").read_text().splitlines()[-80:]))

# Scans are counted from the daemon's log, not its database: the fuzzer deletes scans too.
server_errors, last_status = 0, {}
for line in (work / "daemon.log").read_text().splitlines():
    try:
        event = json.loads(line)
    except ValueError:
        continue
    if event.get("event") == "api.request" and (event.get("status") or 500) >= 500:
        server_errors += 1
    elif event.get("event") == "scan.state":
        last_status[event["scan_id"]] = event["status"]
scans = Counter(last_status.values())
print(f"scans the fuzzer started: {len(last_status) - 3} ({', '.join(f'{k} {v}' for k, v in sorted(scans.items()))}"
      " with the 3 it was given)")
print(f"5xx in the daemon's access log: {server_errors}; daemon still serving: {alive}; {duration} s")
EOF
[ "$(cat "$work/unix.rc")" = 0 ] && [ "$(cat "$work/tls.rc")" = 0 ] && [ "$alive" = yes ]
