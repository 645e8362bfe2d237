"""docs/install.md's commands, run as written with the real kubectl against the emulated API server:
the CRD steps of the install and of an upgrade (apply, wait until Established, then until discovery
serves the kind), and the first stop: apply an example, watch it with `kubectl get tj -w`, describe
it, with the real operator, sidecar, trainer and Prometheus behind the emulator (tests/e2e/harness.py).
The other examples the guide says run on the example trainer image end as it says."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import NAMESPACE, Environment
from tests.support.apiserver.testing import KUBECTLS, kubectl_binary
from tests.support.images import build_plan

REPO = Path(__file__).resolve().parents[3]
INSTALL = REPO / "docs" / "install.md"


def shell_block(containing: str) -> list[str]:
    """The lines of install.md's first ```sh block that contains `containing`."""
    blocks = re.findall(r"```sh\n(.*?)```", INSTALL.read_text(), re.S)
    block = next(b for b in blocks if containing in b)
    return [line.strip() for line in block.splitlines() if line.strip()]


def crd_steps(helm_command: str) -> str:
    """The shell lines of the block that runs `helm_command`, up to it (helm needs a real cluster)."""
    lines = shell_block(helm_command)
    return "\n".join(lines[:next(i for i, line in enumerate(lines) if line.startswith(helm_command))])


async def run_script(script: str, kubeconfig: str, tmp_path: Path, minor: str) -> str:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "KUBECACHEDIR": str(tmp_path / "cache"),
           "PATH": f"{Path(kubectl_binary(minor)).parent}:{os.environ['PATH']}"}
    process = await asyncio.create_subprocess_exec("bash", "-euo", "pipefail", "-c", script, cwd=REPO, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = (await asyncio.wait_for(process.communicate(), 120))[0].decode()
    assert process.returncode == 0, output
    return output


@pytest.mark.parametrize("minor", KUBECTLS)
@pytest.mark.parametrize("apiserver", [{"tls": True}], indirect=True)  # kubectl sends tokens only over TLS
async def test_the_install_and_upgrade_crd_steps_wait_until_the_api_serves_trainingjobs(apiserver, kubeconfig: str,
                                                                                         tmp_path: Path, minor: str) -> None:
    install, upgrade = crd_steps("helm install"), crd_steps("helm upgrade")
    for script in (install, upgrade):
        assert "kubectl apply --server-side -f charts/plateau/crds/" in script
        assert "kubectl wait --for condition=established" in script and "kubectl get tj" in script
    output = await run_script(install, kubeconfig, tmp_path, minor)
    assert "customresourcedefinition.apiextensions.k8s.io/trainingjobs.plateau.dev condition met" in output
    [crd] = apiserver.objects("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    # The upgrade path: the new chart's CRD goes over the installed one by server-side apply
    # (Helm never upgrades crds/). An older copy is installed first, so the apply must change it.
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = crd["spec"]["versions"][0]["additionalPrinterColumns"][:1]
    apiserver.apply(crd)
    output = await run_script(upgrade, kubeconfig, tmp_path, minor)
    assert "customresourcedefinition.apiextensions.k8s.io/trainingjobs.plateau.dev serverside-applied" in output
    [crd] = apiserver.objects("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    chart_crd = yaml.safe_load((REPO / "charts/plateau/crds/trainingjob.yaml").read_text())
    assert crd["spec"]["versions"] == chart_crd["spec"]["versions"]


def trainer_image() -> str:
    return build_plan()["trainer"][0]


@pytest.mark.e2e
async def test_the_first_stop_runs_as_the_guide_says(tmp_path: Path) -> None:
    apply, watch, describe = shell_block("kubectl get tj -w")
    assert apply == "kubectl apply -f examples/plateau-patience.yaml"
    assert watch.startswith("kubectl get tj -w") and describe.startswith("kubectl describe tj resnet-plateau")
    # The trainer image is examples/trainer/ in its WORKDIR: the kubelet stand-in runs the
    # example's command in a copy of that folder.
    async with Environment(tmp_path, ["resnet-plateau"], tls=True,
                           images={trainer_image(): REPO / "examples" / "trainer"}) as env:
        env.start_operator()
        config = env.api.write_kubeconfig(str(tmp_path / "admin.kubeconfig"))
        kube_env = {**os.environ, "KUBECONFIG": config, "KUBECACHEDIR": str(tmp_path / "kubecache")}

        def kubectl(line: str) -> list[str]:
            return [kubectl_binary(), *shlex.split(line.split("#")[0])[1:]]

        async def run(line: str) -> str:
            """One of the guide's kubectl lines, from the repository's root; its output goes in the transcript."""
            transcript.append(f"$ {line.split('#')[0].rstrip()}")
            process = await asyncio.create_subprocess_exec(*kubectl(line), env=kube_env, cwd=REPO,
                                                           stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, f"{line}: {err.decode()}"
            transcript.append(out.decode().rstrip())
            return out.decode()

        transcript: list[str] = []
        await run(apply)
        assert env.tj("resnet-plateau")["metadata"]["namespace"] == NAMESPACE

        # kubectl get tj -w prints a line on every change; the user stops it once it reads Stopped.
        transcript.append(f"$ {watch.split('#')[0].rstrip()}")
        watcher = await asyncio.create_subprocess_exec(*kubectl(watch), env=kube_env, cwd=REPO,
                                                       stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert watcher.stdout is not None
        try:
            async with asyncio.timeout(240):
                while True:
                    line = (await watcher.stdout.readline()).decode().rstrip()
                    assert line, f"kubectl get tj -w ended: {(await watcher.stderr.read()).decode()}"  # type: ignore[union-attr]
                    transcript.append(line)
                    if " Stopped " in line:
                        break
        finally:
            watcher.terminate()
            await watcher.wait()
        header, *rows = transcript[transcript.index(f"$ {watch.split('#')[0].rstrip()}") + 1:]
        assert header.split() == ["NAME", "PHASE", "REASON", "METRIC", "BEST", "GPU-H", "AGE"]
        phases = [row.split()[1] for row in rows]
        assert "Running" in phases and phases[-1] == "Stopped" and rows[-1].split()[2] == "Plateau"

        await env.wait_events("resnet-plateau", ["Running", "StopRequested", "Stopped"], timeout=30)
        described = await run(describe)
        events = described[described.index("Events:"):]
        assert [line.split()[1] for line in events.splitlines() if line.strip().startswith("Normal")] == \
            ["Running", "StopRequested", "Stopped"], events
        assert re.search(r"Phase:\s+Stopped", described) and re.search(r"Reason:\s+Plateau", described)
        # The trainer honoured the request: it checkpointed and exited 0.
        log = env.kubelet.trainer_log("resnet-plateau")
        assert "stop requested (Plateau" in log and env.kubelet.pods["resnet-plateau"].trainer.returncode == 0, log
        wide = (await run("kubectl get tj -o wide")).splitlines()
        assert "MONITORED" in wide[0] and "val_loss" in wide[1]
    print("\n".join(transcript))  # what the guide shows, as this run saw it (pytest -s)


@pytest.mark.e2e
async def test_the_target_example_pushes_its_reports_and_ends_succeeded(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["bert-target"], tls=True,
                           images={trainer_image(): REPO / "examples" / "trainer"}) as env:
        env.start_operator()
        code, _, err = await env.kubectl("apply", "-f", str(REPO / "examples" / "target-metric.yaml"))
        assert code == 0, err
        status = await env.wait_phase("bert-target", "Succeeded", "Failed", "Stopped", timeout=120)
        assert (status["phase"], status["reason"]) == ("Succeeded", "TargetReached"), status
        assert status["metric"]["name"] == "accuracy" and status["metric"]["best"] >= 0.95
        assert "stop requested (TargetReached" in env.kubelet.trainer_log("bert-target")


@pytest.mark.e2e
async def test_the_dry_run_example_reports_where_it_would_stop_and_trains_on(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["shadow-balanced"], tls=True,
                           images={trainer_image(): REPO / "examples" / "trainer"}) as env:
        env.start_operator()
        code, _, err = await env.kubectl("apply", "-f", str(REPO / "examples" / "dry-run.yaml"))
        assert code == 0, err
        await env.wait("status.wouldStop", lambda: env.status("shadow-balanced").get("wouldStop"), timeout=180)
        await asyncio.sleep(3)  # a dry run acts on nothing: the trainer goes on
        status = env.status("shadow-balanced")
        # balanced: a plateau or the forecast, whichever fires first
        assert status["phase"] == "Running" and status["wouldStop"]["reason"] in ("Plateau", "Converged"), status
        assert "WouldStop" in env.event_reasons("shadow-balanced") and "StopRequested" not in env.event_reasons("shadow-balanced")
        assert env.kubelet.pods["shadow-balanced"].trainer.poll() is None
