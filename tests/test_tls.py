"""TLS on both ports from one certificate, as cert-manager would mount it: served, refused in plain text,
rotated in place without a restart, and client certificates required when --ssl_ca_certs is given.
Real clients: httpx with the CA, grpc with the CA, tritonclient.grpc with ssl=True.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest

from tests.grpc_calls import code_of, infer_request, stub
from tests.servers import MODEL_NAME, SEED_ROWS, PredictorProcess, start_predictor, wait_until
from tests.tls_files import Authority

PREDICT = f"/v1/models/{MODEL_NAME}:predict"


def start_tls_server(tracking_uri: str, tmp_path: Path, *extra: str) -> PredictorProcess:
    tls = ("--ssl_certfile", str(tmp_path / "tls.crt"), "--ssl_keyfile", str(tmp_path / "tls.key"))
    return start_predictor(tracking_uri, tmp_path, *tls, *extra)


def https_ready(server: PredictorProcess, ca: Path, cert: tuple[str, str] | None = None) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(*cert)
    try:
        return httpx.get(f"https://127.0.0.1:{server.http_port}/ready", verify=context, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def grpc_works(server: PredictorProcess, ca: Path) -> bool:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    with stub(f"localhost:{server.grpc_port}", credentials) as client:
        return code_of(lambda: client.ModelInfer(infer_request(MODEL_NAME, SEED_ROWS), timeout=5))[0] == (
            grpc.StatusCode.OK
        )


TRITON_TLS = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
target, model, ca = sys.argv[1], sys.argv[2], sys.argv[3]
client = grpcclient.InferenceServerClient(target, ssl=True, root_certificates=ca)
tensor = grpcclient.InferInput("input-0", [1, 10], "FP64")
tensor.set_data_from_numpy(np.array([[75.3, 24, 0.15, 0.65, 0.8, 2.5, 1, 0, 0, 0]], dtype=np.float64))
print(json.dumps(client.infer(model, [tensor]).as_numpy("predictions").tolist()))
"""


def test_both_ports_serve_tls_refuse_plain_text_and_pick_up_a_rotated_certificate(
    tracking_uri: str, tmp_path: Path
) -> None:
    first, second = Authority.create("first CA"), Authority.create("second CA")
    first_ca, second_ca = first.write(tmp_path / "first-ca.crt"), second.write(tmp_path / "second-ca.crt")
    first.issue("predictor", tmp_path / "tls.crt", tmp_path / "tls.key")
    server = start_tls_server(tracking_uri, tmp_path)
    try:
        wait_until(lambda: https_ready(server, first_ca), 90, 0.3, "readiness over HTTPS")
        answer = httpx.post(
            f"https://127.0.0.1:{server.http_port}{PREDICT}",
            json={"instances": SEED_ROWS},
            verify=ssl.create_default_context(cafile=str(first_ca)),
            timeout=10,
        )
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
            httpx.get(f"http://127.0.0.1:{server.http_port}/ready", timeout=3)
        assert grpc_works(server, first_ca)
        with stub(server.grpc_target) as plain:  # plain-text gRPC is refused too
            assert code_of(lambda: plain.ModelInfer(infer_request(MODEL_NAME, SEED_ROWS), timeout=5))[0] == (
                grpc.StatusCode.UNAVAILABLE
            )
        triton = subprocess.run(
            [sys.executable, "-c", TRITON_TLS, f"localhost:{server.grpc_port}", MODEL_NAME, str(first_ca)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert triton.returncode == 0, triton.stderr
        assert json.loads(triton.stdout) in ([0], [1])

        assert not https_ready(server, second_ca)  # before the rotation, the second CA is not trusted
        second.issue("predictor", tmp_path / "tls.crt", tmp_path / "tls.key")  # cert-manager's rotation
        wait_until(lambda: https_ready(server, second_ca), 30, 0.3, "the rotated certificate over HTTPS")
        wait_until(lambda: grpc_works(server, second_ca), 30, 0.3, "the rotated certificate over gRPC")
        assert server.alive()
    finally:
        server.stop()


def test_client_certificates_are_required_with_ssl_ca_certs(tracking_uri: str, tmp_path: Path) -> None:
    authority = Authority.create()
    ca = authority.write(tmp_path / "ca.crt")
    authority.issue("predictor", tmp_path / "tls.crt", tmp_path / "tls.key")
    authority.issue("backend", tmp_path / "client.crt", tmp_path / "client.key", client=True)
    server = start_tls_server(tracking_uri, tmp_path, "--ssl_ca_certs", str(ca))
    client_pair = (str(tmp_path / "client.crt"), str(tmp_path / "client.key"))
    try:
        wait_until(lambda: https_ready(server, ca, client_pair), 90, 0.3, "readiness with a client certificate")
        assert not https_ready(server, ca)  # no client certificate: the handshake fails
        anonymous = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
        with stub(f"localhost:{server.grpc_port}", anonymous) as client:
            assert code_of(lambda: client.ModelInfer(infer_request(MODEL_NAME, SEED_ROWS), timeout=5))[0] == (
                grpc.StatusCode.UNAVAILABLE
            )
        identified = grpc.ssl_channel_credentials(
            root_certificates=ca.read_bytes(),
            private_key=(tmp_path / "client.key").read_bytes(),
            certificate_chain=(tmp_path / "client.crt").read_bytes(),
        )
        with stub(f"localhost:{server.grpc_port}", identified) as client:
            assert client.ModelInfer(infer_request(MODEL_NAME, SEED_ROWS), timeout=10).outputs
    finally:
        server.stop()


def test_a_half_configured_tls_stops_at_start_with_the_reason(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "predictor", "--ssl_certfile", str(tmp_path / "missing.crt")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode != 0
    assert "TLS needs both --ssl_certfile and --ssl_keyfile" in done.stderr
