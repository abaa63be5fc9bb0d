"""A stand-in for the AWS Lambda Invoke API on loopback, for Kairo's tests.

It checks each request's SigV4 signature with botocore's own signer (an
implementation independent of Kairo's) and answers 200 when it matches, 403
when it does not. `GET /_calls` lists what it received.

Usage: lambda_double.py PORT ACCESS_KEY_ID SECRET_ACCESS_KEY REGION
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

PORT, ACCESS_KEY, SECRET_KEY, REGION = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
CALLS = []


def verify(method, path, headers, body):
    """(matches, why): the request's signature against botocore's."""
    auth = headers.get("authorization", "")
    prefix = "AWS4-HMAC-SHA256 "
    if not auth.startswith(prefix):
        return False, "no SigV4 Authorization header"
    fields = dict(part.strip().split("=", 1) for part in auth[len(prefix):].split(","))
    key_id, scope = fields["Credential"].split("/", 1)
    if key_id != ACCESS_KEY:
        return False, f"unknown access key {key_id}"
    signed = fields["SignedHeaders"].split(";")
    request = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{path}",
        data=body,
        headers={name: headers[name] for name in signed},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "lambda", REGION)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if expected != fields["Signature"]:
        return False, f"signature mismatch for scope {scope}"
    return True, "ok"


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, value, extra=()):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, val in extra:
            self.send_header(name, val)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer(200, CALLS)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        ok, why = verify("POST", self.path, headers, body)
        payload = json.loads(body or b"{}")
        CALLS.append({"path": self.path, "payload": payload, "verified": ok, "why": why,
                      "invocationType": headers.get("x-amz-invocation-type")})
        if not ok:
            self.answer(403, {"message": why})
        elif payload.get("parameter1") == "fail":
            self.answer(200, {"errorMessage": "boom"}, [("X-Amz-Function-Error", "Unhandled")])
        else:
            self.answer(200, {"received": payload})

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
