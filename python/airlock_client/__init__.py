"""Python client helpers for Airlock: mint tokens through the issuer with a
personal access token (PAT), refresh them before they expire, and attach the
token and the x-gitlab-* metadata to every gateway call.

    from airlock_client import TokenSource, issuer_channel, gateway_channel, completion_pb2, completion_pb2_grpc

    issuer = issuer_channel("issuer:9440", root_certificates=ca_pem)
    tokens = TokenSource(issuer, pat, features=["duo_chat"])
    gateway = gateway_channel("gateway:9450", tokens, root_certificates=ca_pem)
    stub = completion_pb2_grpc.CompletionServiceStub(gateway)
    req = completion_pb2.StreamCompletionRequest(
        feature="duo_chat", messages=[completion_pb2.Message(role="user", content="hi")])
    for msg in stub.StreamCompletion(req):
        print(msg.text, end="", flush=True)

The generated stubs live in gen/ (``buf generate --template
buf.gen.python.yaml``) and are importable as ``airlock.issuer.v1...`` and
``airlock.gateway.v1...`` once this package is imported. Nothing here logs,
and no repr or error message contains a PAT or a token.
"""

import os
import random
import sys
import threading
import time

_GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen")
if _GEN not in sys.path:
    # The generated modules import each other as airlock.<service>.v1.
    sys.path.insert(0, _GEN)

import grpc  # noqa: E402
from google.protobuf import any_pb2, duration_pb2  # noqa: E402

from airlock.gateway.v1 import completion_pb2, completion_pb2_grpc  # noqa: E402,F401
from airlock.issuer.v1 import token_pb2, token_pb2_grpc  # noqa: E402

__all__ = [
    "AirlockError",
    "retry_after",
    "Token",
    "TokenSource",
    "issuer_channel",
    "gateway_channel",
    "completion_pb2",
    "completion_pb2_grpc",
    "token_pb2",
    "token_pb2_grpc",
]

# A token is refreshed at a random point between these fractions of its
# lifetime (jitter spreads a fleet's refreshes) and treated as expired a
# little before its exp so it is not sent while expiring in flight.
REFRESH_MIN = 0.75
REFRESH_MAX = 0.85
MAX_EXPIRY_MARGIN = 10.0
MIN_BACKOFF = 1.0
MAX_BACKOFF = 60.0


class AirlockError(Exception):
    """A failed call: the gRPC status code and the server's message."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code.name if hasattr(code, "name") else code, message))
        self.code = code
        self.message = message


_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def retry_after(err):
    """Seconds the server asked the caller to wait before retrying, or None.

    Reads the google.rpc.RetryInfo detail of a failed call (the gateway sends
    one with ResourceExhausted when a model server rate-limits, and with
    Unavailable when it gave a Retry-After). The status details are decoded
    by hand: Debian ships no Python package with the google.rpc protos.
    """
    trailers = getattr(err, "trailing_metadata", None)
    md = dict(trailers() or ()) if callable(trailers) else {}
    raw = md.get("grpc-status-details-bin")
    if not raw:
        return None
    try:
        for field, value in _fields(raw):  # google.rpc.Status
            if field != 3:  # details: repeated Any
                continue
            detail = any_pb2.Any.FromString(value)
            if detail.type_url != _RETRY_INFO:
                continue
            for f, v in _fields(detail.value):  # RetryInfo.retry_delay
                if f == 1:
                    d = duration_pb2.Duration.FromString(v)
                    return d.seconds + d.nanos / 1e9
    except Exception:  # malformed details (truncated, wrong types): no hint
        return None
    return None


def _fields(buf):
    """Yields (field number, value) of a protobuf message's varint and
    length-delimited fields (all that Status and RetryInfo use)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            value, i = bytes(buf[i:i + n]), i + n
        else:
            raise ValueError("unexpected wire type %d" % wire)
        yield field, value


def _varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


class Token:
    """A minted token and the x-gitlab-* metadata to forward with it."""

    __slots__ = ("access_token", "jti", "expiry", "scopes", "metadata")

    def __init__(self, access_token, jti, expiry, scopes, metadata):
        self.access_token = access_token
        self.jti = jti
        self.expiry = expiry  # seconds since the epoch
        self.scopes = list(scopes)
        self.metadata = dict(metadata)

    def request_metadata(self):
        """Every (key, value) pair to send with a gateway call."""
        md = [("authorization", "Bearer " + self.access_token)]
        md.extend(sorted(self.metadata.items()))
        return md

    def __repr__(self):
        return "Token(jti=%r, expiry=%r, scopes=%r)" % (self.jti, self.expiry, self.scopes)


def _token_from_response(resp):
    if not resp.token:
        raise AirlockError(grpc.StatusCode.INTERNAL, "mint token: issuer returned no token")
    if not resp.HasField("expire_time"):
        raise AirlockError(grpc.StatusCode.INTERNAL, "mint token: issuer returned no expire_time")
    expiry = resp.expire_time.seconds + resp.expire_time.nanos / 1e9
    # authorization is rebuilt from the token itself so the two never disagree.
    md = {k.lower(): v for k, v in resp.metadata.items() if k.lower().startswith("x-gitlab-")}
    return Token(resp.token, resp.jti, expiry, resp.scopes, md)


class TokenSource:
    """Mints tokens with a PAT and keeps a valid one cached.

    Cold (nothing cached, or the cached token expired): token() mints,
    sharing one mint among concurrent callers. Warm but past the jittered
    refresh point: token() returns the cached token at once and refreshes in
    a background thread. A failed refresh keeps the cached token until it
    expires, retrying with backoff; after that token() raises the error.
    ``now`` and ``jitter`` are injectable for tests.
    """

    def __init__(self, channel, pat, features=(), ttl_seconds=None, now=time.time,
                 jitter=random.random, mint_timeout=10.0, stub=None):
        self._stub = stub or token_pb2_grpc.TokenServiceStub(channel)
        self._auth = (("authorization", "Bearer " + pat.strip()),)
        self._features = list(features)
        self._ttl = ttl_seconds
        self._now = now
        self._jitter = jitter
        self._timeout = mint_timeout
        self._lock = threading.Lock()
        self._tok = None
        self._expire_at = 0.0
        self._refresh_at = 0.0
        self._retry_at = 0.0
        self._failures = 0
        self._last_err = None
        self._inflight = None  # threading.Event of the running mint

    def __repr__(self):
        return "TokenSource(features=%r)" % (self._features,)

    def token(self, timeout=None):
        """Returns a valid Token; raises AirlockError if none can be had."""
        with self._lock:
            now = self._now()
            if self._tok is not None and now < self._expire_at:
                if now >= self._refresh_at and now >= self._retry_at and self._inflight is None:
                    self._start_locked()
                return self._tok
            done = self._inflight
            if done is None:
                if self._last_err is not None and now < self._retry_at:
                    raise self._last_err
                done = self._start_locked()
        if not done.wait(timeout):
            raise AirlockError(grpc.StatusCode.DEADLINE_EXCEEDED, "waiting for a token mint")
        with self._lock:
            if self._tok is not None and self._now() < self._expire_at:
                return self._tok
            raise self._last_err or AirlockError(grpc.StatusCode.UNAVAILABLE, "no token")

    def metadata(self):
        """The (key, value) pairs to send with a gateway call."""
        return self.token().request_metadata()

    def _start_locked(self):
        done = threading.Event()
        self._inflight = done
        threading.Thread(target=self._mint, args=(done,), daemon=True).start()
        return done

    def _mint(self, done):
        tok, err = None, None
        try:
            req = token_pb2.MintTokenRequest(features=self._features)
            if self._ttl:
                req.ttl.CopyFrom(duration_pb2.Duration(seconds=int(self._ttl)))
            tok = _token_from_response(self._stub.MintToken(req, metadata=self._auth, timeout=self._timeout))
        except grpc.RpcError as e:
            err = AirlockError(e.code(), "mint token: " + (e.details() or ""))
        except AirlockError as e:
            err = e
        with self._lock:
            now = self._now()
            if tok is not None and tok.expiry <= now:
                tok, err = None, AirlockError(grpc.StatusCode.INTERNAL, "mint token: issuer returned an expired token")
            if err is not None:
                self._failures += 1
                self._last_err = err
                d = min(MAX_BACKOFF, MIN_BACKOFF * 2 ** min(self._failures - 1, 6))
                self._retry_at = now + d / 2 + d / 2 * self._jitter()
            else:
                life = tok.expiry - now
                self._tok = tok
                self._expire_at = tok.expiry - min(MAX_EXPIRY_MARGIN, life / 10)
                self._refresh_at = now + life * (REFRESH_MIN + (REFRESH_MAX - REFRESH_MIN) * self._jitter())
                self._failures, self._last_err, self._retry_at = 0, None, 0.0
            self._inflight = None
        done.set()


class _AuthPlugin(grpc.AuthMetadataPlugin):
    """Call credentials for TLS channels."""

    def __init__(self, source):
        self._source = source

    def __call__(self, context, callback):
        try:
            callback(tuple(self._source.metadata()), None)
        except Exception as e:  # the error reaches the caller as the call's status
            callback((), e)


class _MetadataInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds the token metadata on plaintext channels, where gRPC refuses
    call credentials."""

    def __init__(self, source):
        self._source = source

    def _details(self, d):
        md = list(d.metadata or []) + self._source.metadata()
        return _CallDetails(d.method, d.timeout, md, d.credentials, d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


def _ssl(root_certificates, private_key, certificate_chain):
    return grpc.ssl_channel_credentials(root_certificates=root_certificates, private_key=private_key,
                                        certificate_chain=certificate_chain)


# The gRPC service config Airlock's clients use for the issuer, the same as
# the Go SDK's client.IssuerServiceConfig (a Go test compares the two): round
# robin over every address, and up to 4 attempts, on UNAVAILABLE only, of
# the calls safe to repeat (MintToken included: a duplicate mint is
# harmless). RotateKeys and the other writes are never retried.
ISSUER_SERVICE_CONFIG = """{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [
      {"service": "airlock.issuer.v1.KeyService", "method": "GetKeys"},
      {"service": "airlock.issuer.v1.KeyService", "method": "WatchKeys"},
      {"service": "airlock.issuer.v1.ModelService", "method": "GetModel"},
      {"service": "airlock.issuer.v1.ModelService", "method": "ListModels"},
      {"service": "airlock.issuer.v1.ModelService", "method": "ListFeatureSettings"},
      {"service": "airlock.issuer.v1.ModelService", "method": "WatchModels"},
      {"service": "airlock.issuer.v1.TokenService", "method": "MintToken"},
      {"service": "airlock.issuer.v1.TokenService", "method": "RevokeToken"},
      {"service": "airlock.issuer.v1.TokenService", "method": "WatchRevocations"},
      {"service": "airlock.issuer.v1.UserService", "method": "ListUsers"}
    ],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.1s",
      "maxBackoff": "1s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}"""


def issuer_target(addr):
    """The gRPC target for addr: "host:port"; "dns:///name:port" (every
    address DNS returns); or a comma-separated list of replicas, which gRPC's
    Python channels accept only as IP literals ("10.0.0.1:9440,10.0.0.2:9440";
    give names through DNS instead). Raises ValueError for a list of names."""
    if "," not in addr:
        return addr
    entries = [a.strip() for a in addr.split(",")]
    for a in entries:
        host, sep, port = a.rpartition(":")
        host = host.strip("[]")
        if not sep or not port.isdigit() or not _is_ip(host):
            raise ValueError("issuer address list %r: every entry must be ip:port (use dns:///name:port for names)" % a)
    family = "ipv6" if all(":" in a.rpartition(":")[0] for a in entries) else "ipv4"
    return family + ":" + ",".join(entries)


def _is_ip(host):
    import ipaddress
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def issuer_channel(addr, root_certificates=None, private_key=None, certificate_chain=None, plaintext=False):
    """A channel to the issuer at addr (see issuer_target: one address,
    dns:///name:port, or a list of replica IPs) with ISSUER_SERVICE_CONFIG:
    TLS (optionally mutual) unless plaintext=True, which is for loopback
    development servers only."""
    target = issuer_target(addr)
    options = [("grpc.service_config", ISSUER_SERVICE_CONFIG), ("grpc.enable_retries", 1)]
    if plaintext:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, _ssl(root_certificates, private_key, certificate_chain), options=options)


def gateway_channel(addr, source, root_certificates=None, private_key=None, certificate_chain=None, plaintext=False):
    """A channel to the gateway that sends source's token and metadata with
    every call. TLS unless plaintext=True (loopback development only: the
    token then travels in clear)."""
    if plaintext:
        return grpc.intercept_channel(grpc.insecure_channel(addr), _MetadataInterceptor(source))
    creds = grpc.composite_channel_credentials(
        _ssl(root_certificates, private_key, certificate_chain),
        grpc.metadata_call_credentials(_AuthPlugin(source)))
    return grpc.secure_channel(addr, creds)
