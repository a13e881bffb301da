"""The deployment files: the Helm chart renders to valid Kubernetes manifests, the
Dockerfile keeps to the basics (pinned base, non-root, no secrets baked in).

helm is not installed here: ``tests/fixtures/helm.py`` renders the chart's Go
templates (the subset they use, the way Helm does, failing on anything else),
and ``kubernetes-validate`` checks every manifest against the Kubernetes
OpenAPI schemas it ships, strictly (unknown fields are errors), offline.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from tests.fixtures.helm import TemplateError, render_chart, render_string
from tests.targets.servers import install_loopback_guard

ROOT = Path(__file__).parent.parent
CHART = ROOT / "deploy" / "helm" / "asyncflow"
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "one-off job": {"run": {"schedule": "", "activeDeadlineSeconds": 3600}},
    "postgres journal in a secret, shared by pods": {
        "journal": {"existingSecret": "asyncflow-journal", "key": "url"},
        "persistence": {"enabled": False},
    },
    "postgres journal url, no ui": {
        "journal": {"url": "postgresql://asyncflow@db:5432/asyncflow"},
        "ui": {"enabled": False},
    },
    "everything set": {
        "image": {"repository": "registry.example/etl", "tag": "2026.11", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "registry"}],
        "run": {
            "task": "pipelines.daily:Report",
            "args": ["--date", "2026-11-23", "--region", "eu"],
            "workers": 16,
            "resources": {"memory_gb": 64, "db": 2},
            "timeZone": "Europe/Paris",
        },
        "env": {"ASYNCFLOW_LOG_LEVEL": "DEBUG", "RETRIES": 3},
        "secretEnv": [{"name": "AWS_SECRET_ACCESS_KEY", "secret": "aws", "key": "secret"}],
        "envFromSecrets": ["gcp-credentials"],
        "persistence": {"existingClaim": "shared-data", "storageClass": "fast"},
        "serviceAccount": {"create": False, "name": "etl"},
        "nodeSelector": {"pool": "batch"},
        "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        "podAnnotations": {"prometheus.io/scrape": "true"},
        "ui": {"service": {"type": "LoadBalancer", "port": 8080}},
    },
}


@pytest.fixture(scope="module", autouse=True)
def _offline() -> None:
    """Validation uses the schemas kubernetes-validate ships: nothing goes out."""
    install_loopback_guard()


def render(values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The chart's manifests by kind (one of each kind here)."""
    manifests = render_chart(CHART, values)
    by_kind = {manifest["kind"]: manifest for manifest in manifests}
    assert len(by_kind) == len(manifests), [m["kind"] for m in manifests]
    return by_kind


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    [only] = spec["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def env(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        item["name"]: item.get("value", item.get("valueFrom"))
        for item in container(manifest)["env"]
    }


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rendered_manifests_are_valid_kubernetes(variant: str, version: str) -> None:
    """Every manifest of every variant validates strictly against the Kubernetes schemas."""
    manifests = render_chart(CHART, VARIANTS[variant])
    assert manifests
    for manifest in manifests:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_validator_rejects_what_kubernetes_would() -> None:
    """The check can fail: an unknown field in a rendered manifest is a validation error."""
    job = render()["CronJob"]
    container(job)["cmd"] = ["asyncflow"]
    with pytest.raises(kubernetes_validate.ValidationError, match="'cmd' was unexpected"):
        kubernetes_validate.validate(job, KUBERNETES_VERSIONS[-1], strict=True)


def test_defaults_run_the_demo_nightly_and_serve_the_status_page() -> None:
    """Defaults: a CronJob running the demo's last task, a UI Deployment, a Service, a PVC."""
    manifests = render()
    assert set(manifests) == {
        "CronJob",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "ServiceAccount",
    }
    cron = manifests["CronJob"]
    assert cron["spec"]["schedule"] == "0 3 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert container(cron)["args"] == [
        "run",
        "/opt/asyncflow/examples/etl.py:LoadReport",
        "--date",
        "2026-11-23",
        "--workers",
        "8",
    ]
    assert container(cron)["image"] == "asyncflow:0.1.0"
    assert env(cron)["ASYNCFLOW_JOURNAL"] == "/data/.asyncflow/journal.db"


def test_workers_resources_and_task_come_from_values() -> None:
    """run.* values become the command line: task, its arguments, --workers, --resources."""
    cron = render(VARIANTS["everything set"])["CronJob"]
    assert container(cron)["args"] == [
        "run",
        "pipelines.daily:Report",
        "--date",
        "2026-11-23",
        "--region",
        "eu",
        "--workers",
        "16",
        "--resources",
        "db=2,memory_gb=64",
    ]
    assert container(cron)["image"] == "registry.example/etl:2026.11"
    assert cron["spec"]["timeZone"] == "Europe/Paris"


def test_an_empty_schedule_runs_once_as_a_job() -> None:
    """run.schedule "" gives a Job (no CronJob), with the same pod."""
    manifests = render(VARIANTS["one-off job"])
    assert "CronJob" not in manifests
    job = manifests["Job"]
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container(job)["args"][:2] == ["run", "/opt/asyncflow/examples/etl.py:LoadReport"]


def test_credentials_come_from_secrets_as_environment_variables() -> None:
    """secretEnv and envFromSecrets reach both pods as secret references, never values."""
    manifests = render(VARIANTS["everything set"])
    for kind in ("CronJob", "Deployment"):
        variables = env(manifests[kind])
        assert variables["AWS_SECRET_ACCESS_KEY"] == {
            "secretKeyRef": {"name": "aws", "key": "secret"}
        }
        assert variables["RETRIES"] == "3"
        assert container(manifests[kind])["envFrom"] == [{"secretRef": {"name": "gcp-credentials"}}]


def test_the_journal_url_is_read_from_a_secret() -> None:
    """journal.existingSecret: ASYNCFLOW_JOURNAL is a secret reference in every pod."""
    manifests = render(VARIANTS["postgres journal in a secret, shared by pods"])
    reference = {"secretKeyRef": {"name": "asyncflow-journal", "key": "url"}}
    assert env(manifests["CronJob"])["ASYNCFLOW_JOURNAL"] == reference
    assert env(manifests["Deployment"])["ASYNCFLOW_JOURNAL"] == reference
    assert "PersistentVolumeClaim" not in manifests
    volumes = manifests["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    assert volumes[0] == {"name": "data", "emptyDir": {}}


def test_the_status_page_listens_off_loopback_with_a_token_from_a_secret() -> None:
    """The UI pod binds 0.0.0.0 (a Service reaches it) and takes its token from a Secret."""
    manifests = render()
    ui = container(manifests["Deployment"])
    assert ui["args"] == ["ui", "--host", "0.0.0.0", "--port", "8082"]
    assert env(manifests["Deployment"])["ASYNCFLOW_UI_TOKEN"] == {
        "secretKeyRef": {"name": "asyncflow-ui-token", "key": "token"}
    }
    service = manifests["Service"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == manifests["Deployment"]["spec"]["selector"]["matchLabels"]


def test_the_status_page_without_a_token_secret_is_refused() -> None:
    """Rendering fails, with the reason, when the UI has no token Secret."""
    with pytest.raises(TemplateError, match="off loopback the status page needs a token"):
        render({"ui": {"token": {"existingSecret": ""}}})


def test_pods_run_as_non_root_with_a_read_only_root() -> None:
    """Both pods run as uid 10001, without privilege escalation, on a read-only root."""
    manifests = render()
    for kind in ("CronJob", "Deployment"):
        spec = manifests[kind]["spec"]
        if kind == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert container(manifests[kind])["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {mount["mountPath"] for mount in container(manifests[kind])["volumeMounts"]}
        assert mounts == {"/data", "/tmp"}  # the only writable places


def test_values_yaml_holds_no_secret() -> None:
    """The default values name Secrets; they hold no password, token or key."""
    values = (CHART / "values.yaml").read_text()
    assert not re.search(r"(?i)(password|token|secret|key)\s*:\s*['\"]?[A-Za-z0-9+/]{16,}", values)
    assert not re.search(r"postgresql://[^@\s]*:[^@\s]*@", values)


# --------------------------------------------------------------------------- the renderer itself


def test_renderer_trims_branches_and_ranges_like_go() -> None:
    """Whitespace trimming, else if chains, sorted map ranges, variables and include."""
    source = (
        '{{- define "pair" }}{{ .k }}={{ .v }}{{ end -}}\n'
        "{{- $n := 0 }}\n"
        "{{- range $k, $v := .m }}\n"
        '{{ include "pair" (dict_k $k $v) }}\n'
        "{{- end }}"
    )
    with pytest.raises(TemplateError, match="'dict_k' is not in the supported subset"):
        render_string(source, {"m": {"b": 2, "a": 1}})
    branches = "{{ if eq .x 1 }}one{{ else if eq .x 2 }}two{{ else }}many{{ end }}"
    assert [render_string(branches, {"x": x}) for x in (1, 2, 3)] == ["one", "two", "many"]
    ranged = "{{- range $k, $v := .m }}\n{{ $k }}={{ $v }}\n{{- end }}"
    assert render_string(ranged, {"m": {"b": 2, "a": 1}}) == "\na=1\nb=2"
    counted = (
        '{{- $all := list }}{{ range .xs }}{{ $all = append $all . }}{{ end }}{{ join "," $all }}'
    )
    assert render_string(counted, {"xs": ["p", "q"]}) == "p,q"
    assert render_string('{{ .missing | default "d" | quote }}', {}) == '"d"'
    assert render_string("{{ toYaml .m | nindent 2 }}", {"m": {"a": [1]}}) == "\n  a:\n  - 1"


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def test_dockerfile_pins_its_base_image() -> None:
    """Every FROM is a full version tag (or a digest), never latest nor a bare major."""
    instructions = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    args = {}
    for instruction, arguments in instructions:
        if instruction == "ARG" and "=" in arguments:
            name, _, default = arguments.partition("=")
            args.setdefault(name, default)
    bases = [a.split()[0] for i, a in instructions if i == "FROM"]
    assert bases
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image), image


def test_dockerfile_runs_as_non_root_with_asyncflow_as_entry_point() -> None:
    """The final stage switches to a numeric non-root user and runs the asyncflow command."""
    instructions = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    last_stage = instructions[max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM") :]
    users = [a for i, a in last_stage if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert users[-1].split(":")[0].isdigit()  # numeric: runAsNonRoot can verify it
    assert ("ENTRYPOINT", '["asyncflow"]') in last_stage
    runs = [a for i, a in instructions if i == "RUN" and "pip install" in a]
    assert runs and all("--no-cache-dir" in run for run in runs)


def test_dockerfile_bakes_in_no_secret() -> None:
    """No ENV or ARG carries a credential, and no credential file is copied in."""
    instructions = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    secret_name = re.compile(r"(?i)(password|passwd|token|secret|credential|api_?key|private)")
    for instruction, arguments in instructions:
        if instruction in ("ENV", "ARG"):
            for assignment in shlex.split(arguments):
                name = assignment.partition("=")[0]
                assert not secret_name.search(name), f"{instruction} {assignment}"
        if instruction in ("COPY", "ADD"):
            sources = [a for a in shlex.split(arguments) if not a.startswith("--")][:-1]
            for source in sources:
                assert not re.search(r"(?i)(\.env|\.pem|\.key|credential|id_rsa|\.ssh)", source)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # everything stays out unless listed (no .env, no .git, no .venv)
    assert "**/.env" in ignored


def test_chart_and_image_agree_on_user_and_version() -> None:
    """The chart's pod user is the image's user; its appVersion is the package's."""
    text = (ROOT / "Dockerfile").read_text()
    uid = re.search(r"^USER (\d+)", text, re.MULTILINE)
    assert uid is not None
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid.group(1))
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = re.search(r'"(.+)"', (ROOT / "src" / "asyncflow" / "_version.py").read_text())
    assert version is not None and chart["appVersion"] == version.group(1)
