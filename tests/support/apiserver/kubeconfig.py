"""Kubeconfig files pointing kubectl, the kubernetes client and kopf at an emulated API server."""
from __future__ import annotations

import base64
import os
import pathlib

import yaml


def write_kubeconfig(path: str, url: str, token: str, namespace: str = 'default',
                     ca: pathlib.Path | None = None) -> str:
    """Write a kubeconfig with one context, `emulator`, using a bearer token; return the path."""
    cluster = {'server': url}
    if ca is not None:
        cluster['certificate-authority-data'] = base64.b64encode(ca.read_bytes()).decode()
    config = {
        'apiVersion': 'v1', 'kind': 'Config', 'preferences': {},
        'clusters': [{'name': 'emulator', 'cluster': cluster}],
        'users': [{'name': 'emulator', 'user': {'token': token}}],
        'contexts': [{'name': 'emulator', 'context': {'cluster': 'emulator', 'user': 'emulator',
                                                      'namespace': namespace}}],
        'current-context': 'emulator',
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(config, f)
    os.chmod(path, 0o600)
    return path
