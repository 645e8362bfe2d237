"""A self-signed certificate for 127.0.0.1, made once per process with the openssl CLI.

Only needed for `ApiServer(tls=True)`: kubectl (client-go) sends credentials only over TLS.
"""
from __future__ import annotations

import atexit
import functools
import pathlib
import shutil
import ssl
import subprocess
import tempfile


@functools.cache
def certificate() -> tuple[pathlib.Path, pathlib.Path]:
    """(certificate, key) PEM files valid for 127.0.0.1 and localhost."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix='apiserver-tls-'))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    cert, key = folder / 'tls.crt', folder / 'tls.key'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                    '-nodes', '-days', '7', '-subj', '/CN=127.0.0.1', '-keyout', str(key), '-out', str(cert),
                    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], check=True, capture_output=True)
    return cert, key


def server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate())
    return context


def client_context() -> ssl.SSLContext:
    """A client context trusting the emulator's certificate (for aiohttp sessions in tests)."""
    return ssl.create_default_context(cafile=str(certificate()[0]))
