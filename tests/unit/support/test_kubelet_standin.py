"""The kubelet stand-in runs what the pod spec says (upstream kubelet behaviour), not what the
operator is expected to build: volumes, mounts and downward-API files come from the spec."""

from __future__ import annotations

from pathlib import Path

from tests.support.kubelet import _env, mounts, volume_dirs, write_downward_api

POD = {
    "metadata": {"annotations": {"plateau.dev/stop": "Plateau", "team": "vision"}},
    "spec": {
        "volumes": [{"name": "shared", "emptyDir": {}},
                    {"name": "stop", "downwardAPI": {"items": [
                        {"path": "stop", "fieldRef": {"fieldPath": "metadata.annotations['plateau.dev/stop']"}},
                        {"path": "spec", "fieldRef": {"fieldPath": "metadata.annotations['plateau.dev/metric-spec']"}},
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
        "containers": [{"name": "trainer", "volumeMounts": [{"name": "shared", "mountPath": "/plateau"},
                                                            {"name": "stop", "mountPath": "/etc/plateau/"}],
                        "env": [{"name": "PLATEAU_STOP_FILE", "value": "/etc/plateau/stop"},
                                {"name": "ELSEWHERE", "value": "/etc/other/stop"},
                                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]}],
    },
}


def test_each_volume_is_a_directory_and_downward_api_items_render_the_current_annotations(tmp_path: Path) -> None:
    volumes = volume_dirs(POD["spec"], tmp_path)
    assert sorted(volumes) == ["shared", "stop"]  # a PVC is not Plateau's: not mounted here
    write_downward_api(POD, volumes)
    assert (volumes["stop"] / "stop").read_text() == "Plateau"
    assert (volumes["stop"] / "spec").read_text() == ""  # an unset annotation: an empty file
    assert not (volumes["stop"] / "labels").exists()  # only annotation items are rendered here
    assert list(volumes["shared"].iterdir()) == []


def test_a_path_resolves_only_inside_the_containers_own_mounts(tmp_path: Path) -> None:
    volumes = volume_dirs(POD["spec"], tmp_path)
    trainer = POD["spec"]["containers"][0]
    env = _env(trainer, mounts(trainer, volumes), "team-a", {})
    assert env["PLATEAU_STOP_FILE"] == str(volumes["stop"] / "stop")
    assert env["ELSEWHERE"] == "/etc/other/stop"  # not mounted: left as written, so nothing is there
    assert env["NS"] == "team-a"
    unmounted = {**trainer, "volumeMounts": []}
    assert _env(unmounted, mounts(unmounted, volumes), "team-a", {})["PLATEAU_STOP_FILE"] == "/etc/plateau/stop"
