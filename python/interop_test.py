"""Interoperability test: Python (Debian's python3-grpcio) mints a token
through the real issuer and streams a completion through the real gateway.

Environment (the same names airlockctl uses):
  AIRLOCK_ISSUER_ADDR   issuer gRPC address (default 127.0.0.1:9440)
  AIRLOCK_GATEWAY_ADDR  gateway gRPC address (default 127.0.0.1:9450)
  AIRLOCK_TOKEN_FILE    file holding a personal access token (required; the test
                        is skipped without it, so unit runs only check imports)
  AIRLOCK_PLAINTEXT     "true" for loopback development servers
  AIRLOCK_CA, AIRLOCK_CERT, AIRLOCK_KEY   TLS trust and client certificate
  AIRLOCK_FEATURE       feature to call (default duo_chat)

Run: python3 python/interop_test.py  (exit 0 only if text streamed back)
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import airlock_client  # noqa: E402
from airlock_client import completion_pb2, completion_pb2_grpc  # noqa: E402


def _read(path):
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


class InteropTest(unittest.TestCase):
    def setUp(self):
        pat_file = os.environ.get("AIRLOCK_TOKEN_FILE")
        if not pat_file:
            self.skipTest("AIRLOCK_TOKEN_FILE not set: no running issuer and gateway to test against")
        with open(pat_file) as f:
            self.pat = f.read().strip()
        self.plaintext = os.environ.get("AIRLOCK_PLAINTEXT", "").lower() in ("1", "true", "yes")
        self.tls = dict(root_certificates=_read(os.environ.get("AIRLOCK_CA")),
                        private_key=_read(os.environ.get("AIRLOCK_KEY")),
                        certificate_chain=_read(os.environ.get("AIRLOCK_CERT")))
        if self.plaintext:
            self.tls = {}
        self.feature = os.environ.get("AIRLOCK_FEATURE", "duo_chat")

    def test_mint_and_stream_completion(self):
        issuer = airlock_client.issuer_channel(os.environ.get("AIRLOCK_ISSUER_ADDR", "127.0.0.1:9440"),
                                               plaintext=self.plaintext, **self.tls)
        self.addCleanup(issuer.close)
        tokens = airlock_client.TokenSource(issuer, self.pat, features=[self.feature])
        tok = tokens.token(timeout=30)
        self.assertTrue(tok.access_token.count(".") == 2, "minted token is not a compact JWS")
        for key in ("x-gitlab-authentication-type", "x-gitlab-instance-id", "x-gitlab-realm", "x-gitlab-global-user-id"):
            self.assertIn(key, tok.metadata)

        gateway = airlock_client.gateway_channel(os.environ.get("AIRLOCK_GATEWAY_ADDR", "127.0.0.1:9450"), tokens,
                                                 plaintext=self.plaintext, **self.tls)
        self.addCleanup(gateway.close)
        stub = completion_pb2_grpc.CompletionServiceStub(gateway)
        req = completion_pb2.StreamCompletionRequest(
            feature=self.feature,
            messages=[completion_pb2.Message(role="user", content="Say hello from the interop test.")])
        text, done = [], None
        for msg in stub.StreamCompletion(req, timeout=60):
            text.append(msg.text)
            if msg.HasField("done"):
                done = msg.done
        answer = "".join(text)
        self.assertTrue(answer.strip(), "no text streamed back through the gateway")
        self.assertIsNotNone(done, "stream ended without the done message")
        self.assertNotEqual(done.finish_reason, completion_pb2.FINISH_REASON_UNSPECIFIED)
        print("interop: %d chars from model %s" % (len(answer), done.model), file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
