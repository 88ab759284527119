#!/usr/bin/env bash
# Airlock's docker compose integration suite (`make compose-test`).
#
# Builds the static binaries and the FROM-scratch images, creates a private
# CA and certificates with `airlockctl cert`, brings up issuer, gateway and
# stub model with mutual TLS everywhere, then drives the running containers
# from the host with airlockctl and grpcurl through published loopback ports.
# Every step prints PASS or FAIL; the last line is "N passed, M failed" and
# the exit status is non-zero if anything failed. Everything is torn down on
# exit, failure or Ctrl-C (images stay tagged airlock-*:dev for reuse).
#
# usage: scripts/compose-test.sh [test|up|down|images]
#   test    (default) the whole suite, then tear down
#   up      build, certificates, KEK, start the stack, register the stub for
#           every feature, write the client settings to dist/compose/<project>/env
#           and print how to use it (`make compose-up`)
#   down    stop the stack, remove its volume and the generated secrets: CA
#           key, certificates, KEK, tokens (`make compose-down`)
#   images  build the binaries and images only
#
# `up`, `down` and `test` share one preparation (stack_up/stack_down below),
# so what `make compose-up` starts is what the suite tests.
#
# environment:
#   AIRLOCK_PROJECT         compose project name (default airlock-<user>; the
#                           suite adds -test); COMPOSE_PROJECT_NAME overrides it
#   AIRLOCK_COMPOSE_KEEP=1  leave the stack running after `test` (debugging)
#   AIRLOCK_COMPOSE_*_PORT  host ports (default: first free from 29440 up)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

mode=${1:-test}
# Two people on one host must not share a project: the default carries the
# user's name (compose project names are lower-case [a-z0-9_-]).
user_tag=$(id -un | tr 'A-Z' 'a-z' | tr -c 'a-z0-9_\n-' '-')
default_project=${AIRLOCK_PROJECT:-airlock-$user_tag}
[[ $mode == test ]] && default_project=$default_project-test
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-$default_project}
project=$COMPOSE_PROJECT_NAME
# Each project keeps its certificates, KEK and tokens in its own directory.
export AIRLOCK_COMPOSE_DIR=$root/dist/compose/$project
export AIRLOCK_COMPOSE_ISSUER_URL=${AIRLOCK_COMPOSE_ISSUER_URL:-https://gitlab.airlock.test}
state=$AIRLOCK_COMPOSE_DIR
tools=$state/tools
ctl_bin=$root/dist/airlockctl
compose=("$root/scripts/compose.sh")

passed=0
failed=0
bg_pids=()

log() { printf '%s compose-test: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
pass() {
	passed=$((passed + 1))
	printf 'PASS  %s\n' "$*"
}
fail() {
	failed=$((failed + 1))
	printf 'FAIL  %s\n' "$*"
}
die() {
	log "fatal: $*"
	fail "$*"
	exit 1
}

# ---------------------------------------------------------------- set-up

# free_port prints the first port from $1 up that nothing on loopback
# listens on; several engineers share this machine.
free_port() {
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
		p=$((p + 1))
	done
	echo "$p"
}

pick_ports() {
	AIRLOCK_COMPOSE_ISSUER_PORT=${AIRLOCK_COMPOSE_ISSUER_PORT:-$(free_port 29440)}
	AIRLOCK_COMPOSE_ISSUER_HTTP_PORT=${AIRLOCK_COMPOSE_ISSUER_HTTP_PORT:-$(free_port $((AIRLOCK_COMPOSE_ISSUER_PORT + 1)))}
	AIRLOCK_COMPOSE_GATEWAY_PORT=${AIRLOCK_COMPOSE_GATEWAY_PORT:-$(free_port $((AIRLOCK_COMPOSE_ISSUER_HTTP_PORT + 1)))}
	AIRLOCK_COMPOSE_GATEWAY_HTTP_PORT=${AIRLOCK_COMPOSE_GATEWAY_HTTP_PORT:-$(free_port $((AIRLOCK_COMPOSE_GATEWAY_PORT + 1)))}
	export AIRLOCK_COMPOSE_ISSUER_PORT AIRLOCK_COMPOSE_ISSUER_HTTP_PORT AIRLOCK_COMPOSE_GATEWAY_PORT AIRLOCK_COMPOSE_GATEWAY_HTTP_PORT
	issuer_addr=localhost:$AIRLOCK_COMPOSE_ISSUER_PORT
	gateway_addr=localhost:$AIRLOCK_COMPOSE_GATEWAY_PORT
}

build_images() {
	log "building static binaries and images"
	"$root/build/stage.sh" issuer gateway stubmodel airlockctl
	local name out
	for name in issuer gateway stubmodel airlockctl; do
		# The legacy builder (all Docker 20.10 has offline) warns on every
		# build; show its output only when the build fails.
		if ! out=$(docker build --quiet -f "build/Dockerfile.$name" -t "airlock-$name:dev" dist/image 2>&1); then
			printf '%s\n' "$out" >&2
			die "docker build airlock-$name:dev"
		fi
	done
}

ensure_grpcurl() {
	if [[ -x $root/bin/grpcurl ]]; then
		grpcurl_bin=$root/bin/grpcurl
	elif command -v grpcurl >/dev/null 2>&1; then
		grpcurl_bin=$(command -v grpcurl)
	else
		log "installing grpcurl v1.9.3 into ./bin"
		GOBIN=$root/bin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3
		grpcurl_bin=$root/bin/grpcurl
	fi
}

# own_for_container makes files readable by the images' user (65532) and
# nobody else. Without root we cannot chown, so these throwaway test
# secrets become world-readable instead; never do that with real ones.
own_for_container() {
	if [[ $(id -u) -eq 0 ]]; then
		chown -R 65532:65532 "$@"
	else
		log "not root: making test secrets in $* world-readable for uid 65532"
		chmod -R a+rX "$@"
	fi
}

# make_pki creates the CA (kept out of every container) and one directory
# per service holding only what that service needs.
make_pki() {
	log "creating a private CA and certificates with airlockctl cert"
	rm -rf "$state"
	(umask 077 && mkdir -p "$state"/{pki,issuer,gateway,tools})
	"$ctl_bin" cert ca --out "$state/pki"
	"$ctl_bin" cert issue --ca-dir "$state/pki" --name issuer --dns issuer,localhost --ip 127.0.0.1 --out "$state/issuer"
	"$ctl_bin" cert issue --ca-dir "$state/pki" --name gateway --dns gateway,localhost --ip 127.0.0.1 --out "$state/gateway"
	"$ctl_bin" cert issue --ca-dir "$state/pki" --name airlockctl --dns airlockctl --out "$state/tools"
	local d f
	for d in issuer gateway tools; do
		cp "$state/pki/ca.crt" "$state/$d/ca.crt"
	done
	for f in issuer/issuer.crt issuer/issuer.key gateway/gateway.crt gateway/gateway.key tools/airlockctl.crt tools/airlockctl.key; do
		[[ -s $state/$f ]] || die "airlockctl cert did not write $f"
	done
	# The key-encryption key for the issuer's signing keys: 32 random bytes.
	(umask 077 && head -c 32 /dev/urandom | base64 >"$state/issuer/kek")
	own_for_container "$state/issuer" "$state/gateway"
}

cid() { "${compose[@]}" ps -q "$1"; }

# wait_health waits until the compose service's container health is $2.
wait_health() {
	local svc=$1 want=$2 deadline=$((SECONDS + ${3:-90})) id st
	while ((SECONDS < deadline)); do
		id=$(cid "$svc" || true)
		if [[ -n $id ]]; then
			st=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || true)
			[[ $st == "$want" ]] && return 0
		fi
		sleep 1
	done
	log "$svc did not become $want (last: ${st:-no container})"
	return 1
}

# fetch_credentials copies the PATs the issuer bootstrapped for the people
# (admin, demo) out of its data volume to the host tools. The gateway needs
# none: its client certificate (spiffe://airlock/gateway) is its identity.
fetch_credentials() {
	local id deadline=$((SECONDS + 30)) name
	id=$(cid issuer)
	for name in admin demo; do
		until docker cp "$id:/data/credentials/$name.token" "$state/tools/$name.token" 2>/dev/null; do
			((SECONDS < deadline)) || die "issuer did not bootstrap credentials/$name.token"
			sleep 1
		done
	done
	chmod 600 "$state"/tools/*.token
}

stack_up() {
	pick_ports
	build_images
	make_pki
	log "starting the issuer (ports: issuer $AIRLOCK_COMPOSE_ISSUER_PORT, gateway $AIRLOCK_COMPOSE_GATEWAY_PORT)"
	"${compose[@]}" up -d issuer
	wait_health issuer healthy || die "issuer never became healthy"
	fetch_credentials
	"${compose[@]}" up -d
	wait_health gateway healthy || die "gateway never became healthy"
}

stack_down() {
	"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
	# Generated secrets (CA key, KEK, PATs) never outlive the stack.
	rm -rf "$state"
}

# models_subnet prints the subnet of the project's models network: the
# stub's trusted network.
models_subnet() {
	docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "${project}_models" | awk '{print $1}'
}

# register_stub makes the stub the model of every feature, as `make run` does.
register_stub() {
	local subnet f
	subnet=$(models_subnet)
	[[ -n $subnet ]] || die "cannot find the models network subnet"
	ctl_admin model create --name stub --family general --provider openai_compatible \
		--endpoint http://stubmodel:9460/v1 --identifier airlock-stub --trusted-network "$subnet" >/dev/null
	for f in duo_chat code_completions code_generations; do
		ctl_admin feature set --feature "$f" --model stub >/dev/null
	done
}

# write_env writes the settings a client needs to reach this stack, for
# `set -a; . dist/compose/<project>/env; set +a`: airlockctl's and the Go
# SDK's variables, and compose's own, so plain compose commands find the
# project too.
write_env() {
	(umask 077 && cat >"$state/env" <<EOF
COMPOSE_PROJECT_NAME=$project
AIRLOCK_COMPOSE_DIR=$state
AIRLOCK_COMPOSE_ISSUER_PORT=$AIRLOCK_COMPOSE_ISSUER_PORT
AIRLOCK_COMPOSE_ISSUER_HTTP_PORT=$AIRLOCK_COMPOSE_ISSUER_HTTP_PORT
AIRLOCK_COMPOSE_GATEWAY_PORT=$AIRLOCK_COMPOSE_GATEWAY_PORT
AIRLOCK_COMPOSE_GATEWAY_HTTP_PORT=$AIRLOCK_COMPOSE_GATEWAY_HTTP_PORT
AIRLOCK_ISSUER_ADDR=$issuer_addr
AIRLOCK_GATEWAY_ADDR=$gateway_addr
AIRLOCK_CA=$tools/ca.crt
AIRLOCK_CERT=$tools/airlockctl.crt
AIRLOCK_KEY=$tools/airlockctl.key
AIRLOCK_TOKEN_FILE=$tools/demo.token
EOF
	)
}

print_usage() {
	cat <<EOF

Airlock is running under docker compose (project $project, mutual TLS everywhere):
  issuer   localhost:$AIRLOCK_COMPOSE_ISSUER_PORT (gRPC; HTTP JWKS on $AIRLOCK_COMPOSE_ISSUER_HTTP_PORT)
  gateway  localhost:$AIRLOCK_COMPOSE_GATEWAY_PORT (gRPC; metrics on $AIRLOCK_COMPOSE_GATEWAY_HTTP_PORT)
  stub model registered for every feature (trusted network $(models_subnet))
Certificates, CA, key-encryption key and tokens: $state/ (removed by make compose-down)

Use it from this shell (airlockctl and the Go SDK read these variables):
  set -a; . $state/env; set +a
  bin/airlockctl complete --feature duo_chat --prompt hello
  bin/airlockctl --token-file $tools/admin.token model list

Or with the airlockctl image, which runs as uid 65532 and so cannot read your owner-only (0600)
token and key files: run it as yourself, on the host network to reach the published ports:
  docker run --rm --network host --user "\$(id -u):\$(id -g)" -v $tools:/tools:ro airlock-airlockctl:dev \\
    --issuer localhost:$AIRLOCK_COMPOSE_ISSUER_PORT --gateway localhost:$AIRLOCK_COMPOSE_GATEWAY_PORT \\
    --ca /tools/ca.crt --cert /tools/airlockctl.crt --key /tools/airlockctl.key --token-file /tools/demo.token \\
    complete --feature duo_chat --prompt hello

Stop it, delete its volume and every generated secret: make compose-down AIRLOCK_PROJECT=$project
(a plain 'docker compose down -v' would leave the CA key, KEK and tokens in $state/)
EOF
}

teardown() {
	local rc=$?
	local p
	for p in "${bg_pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	if ((failed > 0)) || ((rc != 0)); then
		"${compose[@]}" ps >&2 || true
		# The services never log secrets, so their logs are safe to keep.
		"${compose[@]}" logs --no-color --tail=200 >"$root/dist/compose-test.log" 2>&1 || true
		log "service logs: dist/compose-test.log"
	fi
	if [[ ${AIRLOCK_COMPOSE_KEEP:-} == 1 ]]; then
		log "AIRLOCK_COMPOSE_KEEP=1: leaving project $project running; stop it with $0 down"
	else
		stack_down
	fi
	echo "$passed passed, $failed failed"
	if ((failed > 0)) && ((rc == 0)); then
		rc=1
	fi
	exit "$rc"
}

# ---------------------------------------------------------------- clients

ctl() {
	"$ctl_bin" --issuer "$issuer_addr" --gateway "$gateway_addr" \
		--ca "$tools/ca.crt" --cert "$tools/airlockctl.crt" --key "$tools/airlockctl.key" "$@"
}
ctl_admin() { ctl --token-file "$tools/admin.token" "$@"; }
ctl_demo() { ctl --token-file "$tools/demo.token" "$@"; }

# grpc ADDR METHOD [grpcurl args...]: mutual TLS with the tools certificate.
grpc() {
	local addr=$1 method=$2
	shift 2
	"$grpcurl_bin" -connect-timeout 5 -max-time 20 \
		-cacert "$tools/ca.crt" -cert "$tools/airlockctl.crt" -key "$tools/airlockctl.key" \
		"$@" "$addr" "$method"
}

# as_user FILE METHOD [args...]: calls the issuer as the user whose
# personal access token is in FILE. The token travels through the
# environment (grpcurl -expand-headers), never on a command line that any
# local user could read in the process list.
as_user() {
	local file=$1 method=$2
	shift 2
	# shellcheck disable=SC2016 # grpcurl expands ${AIRLOCK_AUTHZ} itself.
	AIRLOCK_AUTHZ="Bearer $(tr -d '[:space:]' <"$file")" \
		grpc "$issuer_addr" "$method" -expand-headers -rpc-header 'authorization: ${AIRLOCK_AUTHZ}' "$@"
}

# mint FILE FEATURE: mints a token as the user of the PAT in FILE and writes
# the MintToken answer (JSON) to stdout.
mint() { as_user "$1" airlock.issuer.v1.TokenService/MintToken -d "{\"features\":[\"$2\"]}"; }

# headers_of JSON: one `-rpc-header key: value` pair per metadata entry of a
# MintToken answer except authorization (see stream_with), NUL-separated.
headers_of() {
	jq -j '.metadata | to_entries[] | select(.key != "authorization") | "-rpc-header\u0000\(.key): \(.value)\u0000"' <<<"$1"
}

# stream_with JSON: streams a duo_chat completion with the minted token and
# prints grpcurl's output (stdout and stderr); returns grpcurl's status. The
# bearer token goes through the environment like the PATs do.
stream_with() {
	local args=()
	mapfile -d '' args < <(headers_of "$1")
	# shellcheck disable=SC2016 # grpcurl expands ${AIRLOCK_AUTHZ} itself.
	AIRLOCK_AUTHZ=$(jq -r '.metadata.authorization' <<<"$1") \
		grpc "$gateway_addr" airlock.gateway.v1.CompletionService/StreamCompletion "${args[@]}" \
		-expand-headers -rpc-header 'authorization: ${AIRLOCK_AUTHZ}' \
		-d '{"feature":"duo_chat","messages":[{"role":"user","content":"say hello"}]}' 2>&1
}

health() { grpc "$1" grpc.health.v1.Health/Check 2>&1 | jq -r '.status // empty' 2>/dev/null || true; }
health_is() { [[ $(health "$2") == "$1" ]]; }

# streams_text OUTPUT: true if grpcurl's stream of JSON messages (one text
# delta each) or airlockctl's plain output spells the stub's sentence.
streams_text() {
	local joined
	joined=$(jq -rj 'select(type == "object") | .text // empty' 2>/dev/null <<<"$1" || true)
	grep -q 'Hello from the Airlock stub model' <<<"$joined$1"
}

# has_model NAME JSON: the ListModels answer holds a model called NAME.
has_model() { jq -e --arg n "$1" '.models[] | select(.name == $n)' >/dev/null 2>&1 <<<"$2"; }

# code_of prints the gRPC code name grpcurl reported, e.g. Unavailable.
code_of() { sed -n 's/^ *Code: //p' <<<"$1" | head -n1; }
stream_code_is() { [[ $(code_of "$(stream_with "$2")") == "$1" ]]; }

ctl_complete_streams() {
	local out
	out=$(ctl_demo complete --feature duo_chat --prompt "say hello") && streams_text "$out"
}

# expect_stream NAME JSON: one streamed completion must succeed.
expect_stream() {
	local out
	out=$(stream_with "$2") || true
	if streams_text "$out"; then
		pass "$1"
	else
		fail "$1: $(code_of "$out") $(grep -m1 'Message:' <<<"$out" || true)"
	fi
}

# traffic JSON OUTFILE: streams completions back to back until killed,
# appending "ok" or the failure's code to OUTFILE, one line per request.
traffic() {
	local out
	while :; do
		out=$(stream_with "$1") || true
		if streams_text "$out"; then echo ok; else echo "err $(code_of "$out")"; fi
		sleep 0.2
	done >>"$2"
}

start_traffic() {
	: >"$2"
	traffic "$1" "$2" &
	bg_pids+=($!)
	traffic_pid=$!
}

# stop_traffic NAME FILE: stops the loop and asserts every request passed.
stop_traffic() {
	kill "$traffic_pid" 2>/dev/null || true
	wait "$traffic_pid" 2>/dev/null || true
	local total bad
	total=$(grep -c . "$2" || true)
	bad=$(grep -vc '^ok$' "$2" || true)
	if ((total >= 3)) && ((bad == 0)); then
		pass "$1 ($total requests, all streamed text)"
	else
		fail "$1 ($total requests, $bad failed: $(grep -v '^ok$' "$2" | sort | uniq -c | tr '\n' ' '))"
	fi
}

# check NAME CMD...: PASS if CMD succeeds, else FAIL.
check() {
	local name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name"; fi
}

# eventually NAME SECONDS CMD...: retries CMD once a second until it
# succeeds (PASS) or the time is up (FAIL). Like check it always returns 0:
# the verdict is recorded, and the suite goes on to the next assertion.
eventually() {
	local name=$1 secs=$2 deadline=$((SECONDS + $2))
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			fail "$name (not within ${secs}s)"
			return 0
		fi
		sleep 1
	done
	pass "$name"
}

# ---------------------------------------------------------------- steps

step_full_flow() {
	log "step: full flow"
	local subnet
	subnet=$(models_subnet)
	[[ -n $subnet ]] || die "cannot find the models network subnet"

	check "issuer health SERVING over mTLS" test "$(health "$issuer_addr")" = SERVING
	check "gateway health SERVING over mTLS" test "$(health "$gateway_addr")" = SERVING

	local out
	if out=$("$grpcurl_bin" -connect-timeout 5 -max-time 10 -cacert "$tools/ca.crt" "$gateway_addr" grpc.health.v1.Health/Check 2>&1); then
		fail "gateway refuses a client without certificate (got: $out)"
	else
		pass "gateway refuses a client without certificate"
	fi

	if ctl_admin model create --name stub --family general --provider openai_compatible \
		--endpoint http://stubmodel:9460/v1 --identifier airlock-stub --trusted-network "$subnet" >/dev/null; then
		pass "airlockctl model create (stub, trusted network $subnet)"
	else
		fail "airlockctl model create"
	fi
	local f ok=1
	for f in duo_chat code_completions code_generations; do
		ctl_admin feature set --feature "$f" --model stub >/dev/null || ok=0
	done
	check "airlockctl feature set for every feature" test "$ok" = 1

	# The gateway learns of the model through its watch; allow it a moment.
	eventually "airlockctl complete streams text through the gateway" 20 ctl_complete_streams

	# Every later step replays this token, so without it there is no point
	# in going on.
	token_json=$(mint "$tools/demo.token" duo_chat) || die "MintToken as the demo user"
	check "MintToken returns a compact JWS" test "$(jq -r '.token | split(".") | length' <<<"$token_json")" = 3
	expect_stream "grpcurl StreamCompletion with a minted token streams text" "$token_json"

	out=$(grpc "$gateway_addr" airlock.gateway.v1.CompletionService/StreamCompletion \
		-d '{"feature":"duo_chat","messages":[{"role":"user","content":"hi"}]}' 2>&1) || true
	check "no token: Unauthenticated (got '$(code_of "$out")')" test "$(code_of "$out")" = Unauthenticated
}

step_issuer_restart() {
	log "step: issuer restart"
	"${compose[@]}" restart issuer >/dev/null
	check "issuer healthy after restart" wait_health issuer healthy
	expect_stream "token minted before the issuer restart still verifies" "$token_json"
	local out
	out=$(as_user "$tools/admin.token" airlock.issuer.v1.ModelService/ListModels 2>&1) || true
	check "models kept across the issuer restart" has_model stub "$out"
	local fresh
	if fresh=$(mint "$tools/demo.token" duo_chat); then
		expect_stream "token minted after the restart verifies" "$fresh"
	else
		fail "MintToken after the restart"
	fi
}

step_issuer_stopped() {
	log "step: issuer stopped while traffic flows"
	start_traffic "$token_json" "$state/traffic-stop.log"
	sleep 2
	"${compose[@]}" stop issuer >/dev/null
	sleep 6
	stop_traffic "valid tokens keep working on cached keys while the issuer is down" "$state/traffic-stop.log"
	"${compose[@]}" start issuer >/dev/null
	check "issuer healthy again after start" wait_health issuer healthy
}

step_network_cut() {
	log "step: network between gateway and issuer cut and restored"
	local gw net="${project}_control"
	gw=$(cid gateway)
	start_traffic "$token_json" "$state/traffic-cut.log"
	sleep 1
	docker network disconnect "$net" "$gw"
	sleep 6
	stop_traffic "requests keep verifying while the gateway cannot reach the issuer" "$state/traffic-cut.log"
	docker network connect "$net" "$gw"
	pass "network restored"

	# A revocation made now reaches the gateway only if it re-established
	# its watch on the issuer after the cut.
	local victim jti
	if ! victim=$(mint "$tools/demo.token" duo_chat); then
		fail "MintToken after the network returns"
		return
	fi
	expect_stream "fresh token verifies after the network returns" "$victim"
	jti=$(jq -r .jti <<<"$victim")
	if ctl_admin token revoke --jti "$jti" >/dev/null; then
		pass "airlockctl token revoke"
	else
		fail "airlockctl token revoke"
	fi
	eventually "revocation reaches the gateway after reconnect (Unauthenticated)" 15 \
		stream_code_is Unauthenticated "$victim"
}

step_rotation() {
	log "step: key rotation under traffic"
	local before after
	before=$(as_user "$tools/admin.token" airlock.issuer.v1.KeyService/GetKeys 2>/dev/null | jq -r '.keySet.revision // 0')
	start_traffic "$token_json" "$state/traffic-rotate.log"
	sleep 1
	if ctl_admin keys rotate >/dev/null; then pass "airlockctl keys rotate"; else fail "airlockctl keys rotate"; fi
	local fresh
	if fresh=$(mint "$tools/demo.token" duo_chat); then
		expect_stream "token minted right after rotation verifies" "$fresh"
	else
		fail "MintToken right after rotation"
	fi
	sleep 3
	stop_traffic "old-key tokens keep verifying during rotation" "$state/traffic-rotate.log"
	after=$(as_user "$tools/admin.token" airlock.issuer.v1.KeyService/GetKeys 2>/dev/null | jq -r '.keySet.revision // 0')
	check "key set revision advanced ($before -> $after)" test "${after:-0}" -gt "${before:-0}"
}

step_gateway_restart_issuer_down() {
	log "step: gateway restarted with the issuer down"
	"${compose[@]}" stop issuer >/dev/null
	"${compose[@]}" restart gateway >/dev/null
	# Fail closed: no keys, no verification, and health says so.
	eventually "gateway health NOT_SERVING without keys" 30 \
		health_is NOT_SERVING "$gateway_addr"
	local out
	out=$(stream_with "$token_json") || true
	check "gateway without keys answers Unavailable (got '$(code_of "$out")')" test "$(code_of "$out")" = Unavailable
	"${compose[@]}" start issuer >/dev/null
	check "issuer healthy again after start" wait_health issuer healthy
	eventually "gateway health SERVING once the issuer returns" 60 \
		health_is SERVING "$gateway_addr"
	expect_stream "gateway recovered: token verifies again" "$token_json"
}

run_suite() {
	rm -f "$root/dist/compose-test.log"
	trap teardown EXIT
	trap 'exit 130' INT TERM
	ensure_grpcurl
	stack_up
	pass "stack up with mutual TLS (issuer, gateway, stubmodel healthy)"
	step_full_flow
	step_issuer_restart
	step_issuer_stopped
	step_network_cut
	step_rotation
	step_gateway_restart_issuer_down
}

case $mode in
test) run_suite ;;
up)
	if [[ -d $state ]]; then
		echo "compose-up: $state exists: project $project is up (or was not taken down); run make compose-down AIRLOCK_PROJECT=$project first, or pick another AIRLOCK_PROJECT" >&2
		exit 1
	fi
	# A failed start-up leaves nothing behind: no containers, no secrets.
	trap 'rc=$?; if ((rc != 0)); then log "start-up failed: taking project $project down again"; stack_down; fi' EXIT
	stack_up
	register_stub
	write_env
	trap - EXIT
	print_usage
	;;
down)
	stack_down
	echo "project $project stopped; its volume and $state/ (CA key, KEK, tokens) are deleted"
	;;
images) build_images ;;
*)
	echo "usage: $0 [test|up|down|images]" >&2
	exit 2
	;;
esac
