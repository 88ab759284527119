#!/usr/bin/env bash
# Starts the stub model, the issuer and the gateway on the loopback defaults,
# registers the stub as the model for every feature, and prints the commands
# that mint a token and stream a completion. With --demo it streams one
# completion itself and exits 0 only if text came back through the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
DATA=${AIRLOCK_DATA:-data}
LOGS=$DATA/logs
DEMO=false
[[ "${1:-}" == "--demo" ]] && DEMO=true
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

wait_healthy() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$name did not become healthy; its log:" >&2
  tail -n 30 "$LOGS/$name.log" >&2
  exit 1
}

"$BIN/stubmodel" --addr 127.0.0.1:9460 >"$LOGS/stubmodel.log" 2>&1 & pids+=($!)
"$BIN/issuer" --dev --data-dir "$DATA/issuer" >"$LOGS/issuer.log" 2>&1 & pids+=($!)
wait_healthy stubmodel "$BIN/stubmodel" healthcheck --addr 127.0.0.1:9460
wait_healthy issuer "$BIN/issuer" healthcheck --addr 127.0.0.1:9440

"$BIN/gateway" --plaintext --issuer-token-file "$DATA/issuer/credentials/gateway.token" >"$LOGS/gateway.log" 2>&1 & pids+=($!)
wait_healthy gateway "$BIN/gateway" healthcheck --addr 127.0.0.1:9450

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

cat <<MSG

Airlock is running (logs in $LOGS/, state in $DATA/issuer/):
  issuer   gRPC 127.0.0.1:9440   HTTP http://127.0.0.1:9441/oauth/discovery/keys
  gateway  gRPC 127.0.0.1:9450   HTTP http://127.0.0.1:9451/metrics   HTTP API http://127.0.0.1:9452/v1 (OpenAI-compatible)
  stub     http://127.0.0.1:9460/v1  (test double, bound to every feature)
Credentials (owner-only files): $DATA/issuer/credentials/{admin,demo,gateway}.token

Stream a completion with airlockctl (mints a token with the demo user's personal access token):
  $BIN/airlockctl $USER_FLAGS complete --feature duo_chat --prompt "Hello"

Or mint a token and call the gateway with grpcurl (make bin/grpcurl installs it):
  eval "\$($BIN/airlockctl $USER_FLAGS token mint --format env)"
  $BIN/grpcurl -plaintext -H "authorization: Bearer \$AIRLOCK_JWT" -H "x-gitlab-authentication-type: oidc" \\
    -H "x-gitlab-instance-id: \$AIRLOCK_INSTANCE_ID" -H "x-gitlab-realm: self-managed" \\
    -H "x-gitlab-global-user-id: \$AIRLOCK_GLOBAL_USER_ID" \\
    -d '{"feature":"duo_chat","messages":[{"role":"user","content":"Hello"}]}' \\
    127.0.0.1:9450 airlock.gateway.v1.CompletionService/StreamCompletion

Or through the OpenAI-compatible HTTP API, with curl or any OpenAI SDK (OPENAI_API_KEY and
OPENAI_BASE_URL come from the same eval):
  eval "\$($BIN/airlockctl $USER_FLAGS token mint --format env)"
  curl -N "\$OPENAI_BASE_URL/chat/completions" -H "Authorization: Bearer \$OPENAI_API_KEY" -H "Content-Type: application/json" \\
    -d '{"model":"duo_chat","stream":true,"messages":[{"role":"user","content":"Hello"}]}'

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "a service exited; see $LOGS/" >&2
exit 1
