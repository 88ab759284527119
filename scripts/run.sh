#!/usr/bin/env bash
# Starts the stub model, the issuer and the gateway on the loopback defaults,
# registers the stub as the model for every feature, and prints the commands
# that mint a token and stream a completion. With --demo it streams one
# completion itself and exits 0 only if text came back through the gateway.
#
# Before anything else (before a log is truncated) it checks that every port
# it needs is free, and names the process holding a busy one. The banner is
# printed only once both services answer their health checks from processes
# this script started.
#
# The banner is executed documentation: every line indented by four spaces
# is a command, and each run of such lines is one shell block that
# e2e/docs_test.go runs against this script's services. Keep them runnable
# as printed.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
DATA=${AIRLOCK_DATA:-data}
LOGS=$DATA/logs
DEMO=false
[[ "${1:-}" == "--demo" ]] && DEMO=true

# The loopback ports of the defaults: issuer gRPC/HTTP, gateway gRPC/HTTP/HTTP API, stub.
PORTS=(9440 9441 9450 9451 9452 9460)

# port_holder PORT prints who listens on 127.0.0.1:PORT, as precisely as
# this machine lets us see (another user's process may show without a name).
port_holder() {
	local p=$1 out
	if command -v ss >/dev/null 2>&1; then
		out=$(ss -Hltnp "sport = :$p" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n1 || true)
		if [[ -n $out ]]; then
			echo "$out" | sed -E 's/users:\(\("([^"]*)",pid=([0-9]+).*/\1 (pid \2)/'
			return
		fi
	fi
	if command -v lsof >/dev/null 2>&1; then
		out=$(lsof -nP -iTCP:"$p" -sTCP:LISTEN -Fpc 2>/dev/null | tr '\n' ' ' || true)
		if [[ $out =~ p([0-9]+)\ c([^ ]+) ]]; then
			echo "${BASH_REMATCH[2]} (pid ${BASH_REMATCH[1]})"
			return
		fi
	fi
	echo "a process this user cannot see (try: sudo ss -ltnp 'sport = :$p')"
}

busy=()
for p in "${PORTS[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		busy+=("$p")
	fi
done
if ((${#busy[@]} > 0)); then
	echo "run: cannot start: these loopback ports are already in use:" >&2
	for p in "${busy[@]}"; do
		echo "  127.0.0.1:$p  held by $(port_holder "$p")" >&2
	done
	echo "Is another 'make run' (or 'make demo') running? Stop it (Ctrl-C in its terminal, or kill the pid above) and try again." >&2
	exit 1
fi

if $DEMO; then DATA=$(mktemp -d "${TMPDIR:-/tmp}/airlock-demo.XXXXXX"); LOGS=$DATA/logs; fi
mkdir -p "$LOGS"

pids=()
cleanup() {
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if $DEMO; then rm -rf "$DATA"; fi
}
trap cleanup EXIT
trap 'echo; echo "stopping..."; exit 0' INT TERM

# wait_healthy NAME PID COMMAND...: waits until COMMAND succeeds while PID,
# the process this script started, still runs: an answer from someone
# else's process on the same port is not our service being healthy.
wait_healthy() {
	local name=$1 pid=$2
	shift 2
	for _ in $(seq 1 100); do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "$name exited during start-up; its log ($LOGS/$name.log):" >&2
			tail -n 30 "$LOGS/$name.log" >&2
			exit 1
		fi
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	echo "$name did not become healthy; its log ($LOGS/$name.log):" >&2
	tail -n 30 "$LOGS/$name.log" >&2
	exit 1
}

"$BIN/stubmodel" --addr 127.0.0.1:9460 >"$LOGS/stubmodel.log" 2>&1 &
stub_pid=$!
pids+=("$stub_pid")
"$BIN/issuer" --dev --data-dir "$DATA/issuer" --gateway-api-url http://127.0.0.1:9452 >"$LOGS/issuer.log" 2>&1 &
issuer_pid=$!
pids+=("$issuer_pid")
wait_healthy stubmodel "$stub_pid" "$BIN/stubmodel" healthcheck --addr 127.0.0.1:9460
wait_healthy issuer "$issuer_pid" "$BIN/issuer" healthcheck --addr 127.0.0.1:9440

"$BIN/gateway" --plaintext --issuer-token-file "$DATA/issuer/credentials/gateway.token" >"$LOGS/gateway.log" 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")
wait_healthy gateway "$gateway_pid" "$BIN/gateway" healthcheck --addr 127.0.0.1:9450

ADMIN=(--plaintext --token-file "$DATA/issuer/credentials/admin.token")
if ! "$BIN/airlockctl" "${ADMIN[@]}" model get --name stub >/dev/null 2>&1; then
	"$BIN/airlockctl" "${ADMIN[@]}" model create --name stub --family general --provider openai_compatible \
		--endpoint http://127.0.0.1:9460/v1 --identifier airlock-stub --trusted-network 127.0.0.1/32 >/dev/null
fi
for f in code_completions code_generations duo_chat; do
	"$BIN/airlockctl" "${ADMIN[@]}" feature set --feature "$f" --model stub >/dev/null
done

USER_FLAGS="--plaintext --token-file $DATA/issuer/credentials/demo.token"
if $DEMO; then
	echo "== streaming a completion through the gateway =="
	out=$("$BIN/airlockctl" $USER_FLAGS complete --feature duo_chat --prompt "Say hello")
	echo "$out"
	if [[ -z "${out// /}" ]]; then echo "demo: FAIL, no text streamed back" >&2; exit 1; fi
	if command -v curl >/dev/null; then
		echo "== the same through the OpenAI-compatible HTTP API =="
		eval "$("$BIN/airlockctl" $USER_FLAGS token mint --format env)"
		sse=$(curl -sS -N "$OPENAI_BASE_URL/chat/completions" -H "Authorization: Bearer $OPENAI_API_KEY" \
			-H "Content-Type: application/json" -d '{"model":"duo_chat","stream":true,"messages":[{"role":"user","content":"Say hello"}]}')
		echo "$sse" | tail -n 4
		if [[ "$sse" != *'"content":"'* || "$sse" != *"data: [DONE]"* ]]; then echo "demo: FAIL, no SSE answer from the HTTP API" >&2; exit 1; fi
	fi
	echo "demo: OK, text streamed back through the gateway"
	exit 0
fi

for p in "${pids[@]}"; do
	if ! kill -0 "$p" 2>/dev/null; then
		echo "a service exited during start-up; see $LOGS/" >&2
		exit 1
	fi
done

cat <<MSG

Airlock is running (logs in $LOGS/, state in $DATA/issuer/):
  issuer   gRPC 127.0.0.1:9440   HTTP http://127.0.0.1:9441/oauth/discovery/keys
  gateway  gRPC 127.0.0.1:9450   HTTP http://127.0.0.1:9451/metrics   HTTP API http://127.0.0.1:9452/v1 (OpenAI-compatible)
  stub     http://127.0.0.1:9460/v1  (test double, bound to every feature)
Credentials (owner-only files): $DATA/issuer/credentials/{admin,demo,gateway}.token
Both services serve plaintext on loopback: clients need --plaintext (AIRLOCK_PLAINTEXT=true).

Stream a completion with airlockctl (mints a token with the demo user's personal access token):
    $BIN/airlockctl $USER_FLAGS complete --feature duo_chat --prompt "Hello"

Or mint a token and call the gateway with grpcurl (install it once with: make grpcurl):
    eval "\$($BIN/airlockctl $USER_FLAGS token mint --format env)"
    $BIN/grpcurl -plaintext -H "authorization: Bearer \$AIRLOCK_JWT" -H "x-gitlab-authentication-type: oidc" \\
      -H "x-gitlab-instance-id: \$AIRLOCK_INSTANCE_ID" -H "x-gitlab-realm: self-managed" \\
      -H "x-gitlab-global-user-id: \$AIRLOCK_GLOBAL_USER_ID" \\
      -d '{"feature":"duo_chat","messages":[{"role":"user","content":"Hello"}]}' \\
      127.0.0.1:9450 airlock.gateway.v1.CompletionService/StreamCompletion

Or through the OpenAI-compatible HTTP API, with curl or any OpenAI SDK (OPENAI_API_KEY and
OPENAI_BASE_URL come from the same eval):
    eval "\$($BIN/airlockctl $USER_FLAGS token mint --format env)"
    curl -sS -N "\$OPENAI_BASE_URL/chat/completions" -H "Authorization: Bearer \$OPENAI_API_KEY" -H "Content-Type: application/json" \\
      -d '{"model":"duo_chat","stream":true,"messages":[{"role":"user","content":"Hello"}]}'

Or, as an IDE does, ask the issuer's GitLab REST API for a direct connection to the gateway:
    curl -sSf -X POST http://127.0.0.1:9441/api/v4/code_suggestions/direct_access -H "PRIVATE-TOKEN: \$(cat $DATA/issuer/credentials/demo.token)"

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "a service exited; see $LOGS/" >&2
exit 1
