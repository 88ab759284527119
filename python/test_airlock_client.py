"""Unit tests of airlock_client without servers: the generated stubs import,
and the token source caches, refreshes in the background and keeps a token
through failed refreshes. Run: python3 -m unittest discover -s python"""

import threading
import time
import unittest

import grpc

import airlock_client
from airlock_client import AirlockError, TokenSource, token_pb2


class FakeClock:
    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self):
        return self.t


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class FakeStub:
    """Mints tok-N living ttl seconds on clock; fails with err; waits on gate."""

    def __init__(self, clock, ttl=3600):
        self.clock, self.ttl = clock, ttl
        self.calls, self.err, self.gate = 0, None, None
        self.metadata = None
        self.lock = threading.Lock()

    def MintToken(self, req, metadata=None, timeout=None):
        if self.gate is not None:
            self.gate.wait(5)
        with self.lock:
            self.calls += 1
            self.metadata = metadata
            if self.err is not None:
                raise self.err
            resp = token_pb2.MintTokenResponse(token="tok-%d" % self.calls, jti="jti-%d" % self.calls, scopes=["duo_chat"])
            resp.expire_time.seconds = int(self.clock() + self.ttl)
            resp.metadata["authorization"] = "Bearer ignored"
            resp.metadata["x-gitlab-instance-id"] = "inst"
            resp.metadata["X-Gitlab-Realm"] = "self-managed"
            resp.metadata["x-other"] = "dropped"
            return resp


def new_source():
    clock = FakeClock()
    stub = FakeStub(clock)
    src = TokenSource(None, "glpat-secret\n", features=["duo_chat"], now=clock, jitter=lambda: 0.0, stub=stub)
    return src, stub, clock


def wait_idle(src):
    deadline = time.time() + 5
    while time.time() < deadline:
        with src._lock:
            if src._inflight is None:
                return
        time.sleep(0.001)
    raise AssertionError("mint still in flight")


class GeneratedStubsTest(unittest.TestCase):
    def test_every_service_imports(self):
        from airlock.gateway.v1 import completion_pb2_grpc
        from airlock.issuer.v1 import keys_pb2_grpc, model_pb2_grpc, token_pb2_grpc, user_pb2_grpc
        for stub in (completion_pb2_grpc.CompletionServiceStub, token_pb2_grpc.TokenServiceStub,
                     keys_pb2_grpc.KeyServiceStub, model_pb2_grpc.ModelServiceStub, user_pb2_grpc.UserServiceStub):
            self.assertTrue(callable(stub))

    def test_channels_build_without_connecting(self):
        src, _, _ = new_source()
        for ch in (airlock_client.issuer_channel("127.0.0.1:1", plaintext=True),
                   airlock_client.gateway_channel("127.0.0.1:1", src, plaintext=True),
                   airlock_client.gateway_channel("127.0.0.1:1", src)):
            ch.close()


class TokenSourceTest(unittest.TestCase):
    def test_mints_once_and_caches(self):
        src, stub, clock = new_source()
        tok = src.token()
        clock.t += 1800
        self.assertIs(src.token(), tok)
        self.assertEqual(stub.calls, 1)
        self.assertEqual(stub.metadata, (("authorization", "Bearer glpat-secret"),))

    def test_metadata_keeps_only_gitlab_keys_and_rebuilds_authorization(self):
        src, _, _ = new_source()
        self.assertEqual(src.metadata(), [
            ("authorization", "Bearer tok-1"),
            ("x-gitlab-instance-id", "inst"),
            ("x-gitlab-realm", "self-managed"),
        ])

    def test_refresh_happens_in_background_without_blocking(self):
        src, stub, clock = new_source()
        old = src.token()
        stub.gate = threading.Event()
        clock.t += 2700  # 75 % of an hour: the refresh point with jitter 0
        start = time.time()
        self.assertIs(src.token(), old)
        self.assertLess(time.time() - start, 1.0)
        stub.gate.set()
        wait_idle(src)
        self.assertEqual(src.token().access_token, "tok-2")

    def test_failed_refresh_keeps_old_token_until_expiry_then_raises(self):
        src, stub, clock = new_source()
        old = src.token()
        stub.err = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "issuer down")
        clock.t += 3000
        self.assertIs(src.token(), old)
        wait_idle(src)
        clock.t += 600  # past exp
        with self.assertRaises(AirlockError) as cm:
            src.token()
        self.assertEqual(cm.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(cm.exception.message, "mint token: issuer down")

    def test_concurrent_cold_callers_share_one_mint(self):
        src, stub, _ = new_source()
        stub.gate = threading.Event()
        got = []
        threads = [threading.Thread(target=lambda: got.append(src.token())) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.02)
        stub.gate.set()
        for t in threads:
            t.join()
        self.assertEqual(stub.calls, 1)
        self.assertEqual(len({id(t) for t in got}), 1)

    def test_repr_hides_secrets(self):
        src, _, _ = new_source()
        tok = src.token()
        self.assertNotIn("tok-1", repr(tok))
        self.assertNotIn("glpat-secret", repr(src))

class RetryAfterTest(unittest.TestCase):
    @staticmethod
    def _len(field, payload):
        return bytes([field << 3 | 2]) + _varint_bytes(len(payload)) + payload

    def _error(self, details):
        class FakeError(Exception):
            def trailing_metadata(self):
                return (("grpc-status-details-bin", details),)
        return FakeError()

    def test_reads_retry_info(self):
        from google.protobuf import any_pb2, duration_pb2
        delay = duration_pb2.Duration(seconds=1, nanos=500000000).SerializeToString()
        retry_info = self._len(1, delay)
        detail = any_pb2.Any(type_url="type.googleapis.com/google.rpc.RetryInfo", value=retry_info).SerializeToString()
        status = bytes([1 << 3]) + bytes([8]) + self._len(2, b"slow down") + self._len(3, detail)
        self.assertEqual(airlock_client.retry_after(self._error(status)), 1.5)

    def test_none_without_a_hint_or_on_garbage(self):
        self.assertIsNone(airlock_client.retry_after(self._error(b"")))
        self.assertIsNone(airlock_client.retry_after(self._error(b"\xff\xff\xff")))
        self.assertIsNone(airlock_client.retry_after(Exception("no trailers")))


def _varint_bytes(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


if __name__ == "__main__":
    unittest.main()


class IssuerTargetTest(unittest.TestCase):
    def test_one_address_and_dns_pass_unchanged(self):
        for addr in ("127.0.0.1:9440", "issuer.example:9440", "dns:///issuer.example:9440"):
            self.assertEqual(airlock_client.issuer_target(addr), addr)

    def test_a_list_of_ips_is_an_ipv4_target(self):
        self.assertEqual(airlock_client.issuer_target("10.0.0.1:9440, 10.0.0.2:9440"), "ipv4:10.0.0.1:9440,10.0.0.2:9440")

    def test_a_list_of_names_or_without_ports_is_refused(self):
        for addr in ("a.example:9440,b.example:9440", "10.0.0.1,10.0.0.2:9440"):
            with self.assertRaises(ValueError):
                airlock_client.issuer_target(addr)

    def test_the_channel_takes_the_service_config(self):
        ch = airlock_client.issuer_channel("127.0.0.1:1,127.0.0.1:2", plaintext=True)
        ch.close()
