"""docs/install.md's CRD steps, run as written with the real kubectl against the emulated API server:
apply the CRD, wait until it is Established, then until discovery serves the kind."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from tests.support.apiserver.testing import KUBECTLS, kubectl_binary

REPO = Path(__file__).resolve().parents[3]


def crd_steps() -> str:
    """The install step's shell lines up to `helm install` (which needs a real cluster)."""
    text = (REPO / "docs" / "install.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "condition=established" in b)
    lines = [line.strip() for line in block.splitlines()]
    return "\n".join(lines[:next(i for i, line in enumerate(lines) if line.startswith("helm "))])


@pytest.mark.parametrize("minor", KUBECTLS)
@pytest.mark.parametrize("apiserver", [{"tls": True}], indirect=True)  # kubectl sends tokens only over TLS
async def test_the_install_guides_crd_steps_wait_until_the_api_serves_trainingjobs(apiserver, kubeconfig: str,
                                                                                    tmp_path: Path, minor: str) -> None:
    script = crd_steps()
    assert "kubectl wait --for condition=established" in script and "kubectl get tj" in script
    env = {**os.environ, "KUBECONFIG": kubeconfig, "KUBECACHEDIR": str(tmp_path / "cache"),
           "PATH": f"{Path(kubectl_binary(minor)).parent}:{os.environ['PATH']}"}
    process = await asyncio.create_subprocess_exec("bash", "-euo", "pipefail", "-c", script, cwd=REPO, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = (await asyncio.wait_for(process.communicate(), 120))[0].decode()
    assert process.returncode == 0, output
    assert "customresourcedefinition.apiextensions.k8s.io/trainingjobs.plateau.dev condition met" in output
    [crd] = apiserver.objects("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
