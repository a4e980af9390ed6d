#!/usr/bin/env python3
"""Proves the Helm chart without a Kubernetes cluster.

For 1, 3, 5 and 7 voters (plus a learner), with external access off, NodePort and
LoadBalancer: `helm lint --strict`, `helm template`, and `kubernetes-validate --strict`
against Kubernetes 1.30 and the newest version the validator ships. Then, over the rendered
YAML: the voter list matches the pod DNS names, the PDB allows at most one unavailable pod,
advertised listeners are per pod, probes use endpoints the binary serves, and the config
every pod gets is accepted by `fjord serve --check-config`. An even voter count must fail.
With TLS, SASL and ACLs on: every listener's protocol, the Secrets mounted where the config
points (the config is checked against certificates made by deploy/gen-certs.sh), and a
NetworkPolicy that lets only the release's pods reach the rpc port.
Plain manifests under k8s/manifests must match what the chart renders.

usage: check_chart.py TOOLS_DIR FJORD_BIN
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import socket

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "k8s", "helm", "fjord")
TOOLS, FJORD = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
HELM = os.path.join(TOOLS, "bin", "helm")
VALIDATE = os.path.join(TOOLS, "venv", "bin", "kubernetes-validate")
NAMESPACE = "streaming"
failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def render(*sets):
    args = [HELM, "template", "fjord", CHART, "--namespace", NAMESPACE]
    for s in sets:
        args += ["--set", s]
    return run(args)


def docs_of(text):
    return [d for d in yaml.safe_load_all(text) if d]


def toml_of(cm):
    import tomllib
    return tomllib.loads(cm["data"]["fjord.toml"])


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flat(v, key))
        else:
            out[key] = v
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


lint = run([HELM, "lint", "--strict", CHART])
check(lint.returncode == 0, f"helm lint --strict: {lint.stdout}{lint.stderr}")

newest = run([VALIDATE, "--version"]).stdout.strip()
scenarios = []
for voters in (1, 3, 5, 7):
    for learners in (0, 1):
        scenarios.append((voters, learners, "off", [f"replicas={voters}", f"learners={learners}"]))
    scenarios.append((voters, 0, "NodePort", [f"replicas={voters}", "externalAccess.enabled=true",
                                               "externalAccess.nodePort.host=kafka.example.com"]))
    addrs = "{" + ",".join(f"lb-{i}.example.com" for i in range(voters)) + "}"
    scenarios.append((voters, 0, "LoadBalancer", [f"replicas={voters}", "externalAccess.enabled=true",
                                                   "externalAccess.type=LoadBalancer",
                                                   f"externalAccess.loadBalancer.addresses={addrs}"]))

SECURE = ["tls.enabled=true", "tls.secretName=fjord-tls", "sasl.enabled=true",
          "sasl.usersSecret=fjord-users", "authorization.enabled=true"]
scenarios.append((3, 0, "LoadBalancer", [
    "replicas=3", "externalAccess.enabled=true", "externalAccess.type=LoadBalancer",
    "externalAccess.loadBalancer.addresses={lb-0.example.com,lb-1.example.com,lb-2.example.com}",
    *SECURE]))
scenarios.append((3, 0, "off", ["tls.enabled=true", "tls.secretName=fjord-tls", "tls.clientAuth=required"]))
scenarios.append((3, 1, "off", ["learners=1", "sasl.enabled=true", "sasl.usersSecret=fjord-users", "networkPolicy.enabled=false",
                                "sasl.mechanisms={SCRAM-SHA-512}"]))


def expected_protocol(sets):
    tls, sasl = "tls.enabled=true" in sets, "sasl.enabled=true" in sets
    return {(True, True): "SASL_SSL", (True, False): "SSL", (False, True): "SASL_PLAINTEXT"}.get(
        (tls, sasl), "PLAINTEXT")


def check_security(name, sets, by_kind, config, spec, container):
    """The security settings of one rendering: listeners, mounted Secrets, NetworkPolicy."""
    protocol = expected_protocol(sets)
    protocols = {p.split(":")[1] for p in config["listener.security.protocol.map"].split(",")}
    check(protocols == {protocol}, f"{name}: every listener speaks {protocol}: {protocols}")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    if "tls.enabled=true" in sets:
        tls = volumes.get("tls", {}).get("secret", {})
        check(tls.get("secretName") == "fjord-tls", f"{name}: the TLS Secret is mounted")
        check({i["path"] for i in tls.get("items", [])} == {"keystore.pem", "ca.pem"},
              f"{name}: keystore and CA from the Secret")
        check(mounts.get("tls") == "/etc/fjord-tls", f"{name}: TLS files at /etc/fjord-tls")
        check(config.get("rpc.ssl.keystore.location") == "/etc/fjord-tls/keystore.pem"
              and config.get("rpc.ssl.truststore.location") == "/etc/fjord-tls/ca.pem",
              f"{name}: mutual TLS between pods")
        if "tls.clientAuth=required" in sets:
            check(config.get("ssl.client.auth") == "required"
                  and config.get("ssl.truststore.location") == "/etc/fjord-tls/ca.pem",
                  f"{name}: client certificates required and trusted")
    else:
        check("tls" not in volumes and "rpc.ssl.keystore.location" not in config,
              f"{name}: no TLS when it is off")
    if "sasl.enabled=true" in sets:
        users = volumes.get("sasl", {}).get("secret", {})
        check(users.get("secretName") == "fjord-users", f"{name}: the SASL users Secret is mounted")
        check(config.get("sasl.users.file") == "/etc/fjord-sasl/users", f"{name}: sasl.users.file")
        check(mounts.get("sasl") == "/etc/fjord-sasl", f"{name}: users at /etc/fjord-sasl")
    if "authorization.enabled=true" in sets:
        check(config.get("authorizer.class.name", "").endswith("StandardAuthorizer")
              and config.get("super.users") == "User:admin", f"{name}: ACLs on, admin a super user")
    policies = by_kind.get("NetworkPolicy", [])
    if "networkPolicy.enabled=false" in sets:
        check(not policies, f"{name}: no NetworkPolicy when disabled")
        return
    check(len(policies) == 1, f"{name}: one NetworkPolicy")
    if not policies:
        return
    selector = spec_selector(by_kind)
    rules = policies[0]["spec"]["ingress"]
    rpc_rules = [r for r in rules if any(p["port"] == 9093 for p in r["ports"])]
    check(len(rpc_rules) == 1 and rpc_rules[0].get("from") == [{"podSelector": {"matchLabels": selector}}],
          f"{name}: only the release's pods reach the rpc port: {rpc_rules}")
    check(policies[0]["spec"]["podSelector"]["matchLabels"] == selector,
          f"{name}: the policy selects the Fjord pods")
    kafka_ports = {p["port"] for r in rules if "from" not in r for p in r["ports"]}
    check(9092 in kafka_ports and 9093 not in kafka_ports, f"{name}: Kafka open, rpc not: {kafka_ports}")


def spec_selector(by_kind):
    return by_kind["StatefulSet"][0]["spec"]["selector"]["matchLabels"]


def secure_paths(toml_text, tmp):
    """The pod config with the Secret mounts pointed at real files made here."""
    tls = os.path.join(tmp, "tls")
    if not os.path.exists(os.path.join(tls, "pod.pem")):
        r = run(["bash", os.path.join(ROOT, "deploy", "gen-certs.sh"), tls, "pod"])
        check(r.returncode == 0, f"gen-certs.sh: {r.stderr}")
        with open(os.path.join(tmp, "users"), "w") as f:
            f.write("admin:admin-secret\n")
    return (toml_text.replace("/etc/fjord-tls/keystore.pem", os.path.join(tls, "pod.pem"))
            .replace("/etc/fjord-tls/ca.pem", os.path.join(tls, "ca.pem"))
            .replace("/etc/fjord-sasl/users", os.path.join(tmp, "users")))


probe_paths = set()
with tempfile.TemporaryDirectory() as tmp:
    for voters, learners, external, sets in scenarios:
        name = f"{voters} voters + {learners} learners, external {external}"
        r = render(*sets)
        check(r.returncode == 0, f"{name}: helm template: {r.stderr}")
        if r.returncode != 0:
            continue
        path = os.path.join(tmp, "rendered.yaml")
        with open(path, "w") as f:
            f.write(r.stdout)
        for k8s in ("1.30.0", newest):
            v = run([VALIDATE, "--strict", "--quiet", "-k", k8s, path])
            check(v.returncode == 0, f"{name}: kubernetes-validate --strict {k8s}: {v.stdout}{v.stderr}")
        docs = docs_of(r.stdout)
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d["kind"], []).append(d)
        sts = by_kind["StatefulSet"][0]
        pods = voters + learners
        check(sts["spec"]["replicas"] == pods, f"{name}: {pods} pods")
        headless = [s for s in by_kind["Service"] if s["spec"].get("clusterIP") == "None"]
        check(len(headless) == 1 and headless[0]["spec"].get("publishNotReadyAddresses") is True,
              f"{name}: one headless Service publishing not-ready addresses")
        check(sts["spec"]["serviceName"] == headless[0]["metadata"]["name"],
              f"{name}: the StatefulSet uses the headless Service")
        pdb = by_kind["PodDisruptionBudget"][0]
        check(pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"],
              f"{name}: PDB allows at most one unavailable pod")
        pod_dns = [f"fjord-{i}.{headless[0]['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
                   for i in range(pods)]
        config = flat(toml_of(by_kind["ConfigMap"][0]))
        expected_voters = ",".join(f"{i}@{pod_dns[i]}:9093" for i in range(voters))
        check(config["controller.quorum.voters"] == expected_voters,
              f"{name}: voters {config['controller.quorum.voters']} != {expected_voters}")
        adverts = [config.get(f"node.{i}.advertised.listeners", "") for i in range(pods)]
        check(len(set(adverts)) == pods, f"{name}: every pod advertises its own addresses")
        for i, a in enumerate(adverts):
            check(f"INTERNAL://{pod_dns[i]}:9092" in a.split(","), f"{name}: pod {i} advertises its DNS name: {a}")
            if external != "off":
                ext = [x for x in a.split(",") if x.startswith("EXTERNAL://")]
                check(len(ext) == 1, f"{name}: pod {i} advertises one external address")
        if external != "off":
            ext_services = [s for s in by_kind["Service"] if s["metadata"]["name"].endswith("-external")]
            check(len(ext_services) == pods, f"{name}: one external Service per pod")
            for i, s in enumerate(sorted(ext_services, key=lambda s: s["metadata"]["name"])):
                sel = s["spec"]["selector"].get("statefulset.kubernetes.io/pod-name")
                check(sel == f"fjord-{i}", f"{name}: external Service {i} selects pod fjord-{i}, got {sel}")
                check(s["spec"]["type"] == external, f"{name}: external Service type {external}")
        container = sts["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        check(env.get("FJORD_NODE_ID") == "ordinal", f"{name}: node id from the pod ordinal")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            http = container[probe]["httpGet"]
            check(http["port"] == "admin" and ports.get("admin") == 9644, f"{name}: {probe} on the admin port")
            probe_paths.add(http["path"])
        spec = sts["spec"]["template"]["spec"]
        check(spec["securityContext"].get("runAsNonRoot") is True and spec["securityContext"].get("fsGroup"),
              f"{name}: non-root with an fsGroup")
        check(spec["terminationGracePeriodSeconds"] >= 60, f"{name}: time for a controlled shutdown")
        check(sts["spec"].get("persistentVolumeClaimRetentionPolicy", {}).get("whenScaled") == "Retain",
              f"{name}: volumes are kept on scale-down")
        name += f", {expected_protocol(sets)}"
        check_security(name, sets, by_kind, config, spec, container)
        # The config each pod gets is accepted by the binary, and resolves to that pod.
        cfg = os.path.join(tmp, "fjord.toml")
        with open(cfg, "w") as f:
            f.write(secure_paths(by_kind["ConfigMap"][0]["data"]["fjord.toml"], tmp))
        for i in range(pods):
            c = run([FJORD, "serve", "--check-config", "--config", cfg],
                    env={**os.environ, "FJORD_NODE_ID": str(i)})
            check(c.returncode == 0, f"{name}: pod {i} config refused: {c.stderr}")
            check("unknown property" not in c.stdout, f"{name}: pod {i} config has unknown keys: {c.stdout}")
            check(f"advertised.listeners = INTERNAL://{pod_dns[i]}:9092" in c.stdout,
                  f"{name}: pod {i} resolves its own advertised listener: {c.stdout}")

    for sets, why in ((["tls.enabled=true"], "tls.secretName"), (["sasl.enabled=true"], "sasl.usersSecret"),
                      (["tls.enabled=true", "tls.secretName=x", "tls.clientAuth=maybe"], "clientAuth")):
        r = render(*sets)
        check(r.returncode != 0 and why in r.stderr, f"{sets} must not render (about {why}): {r.stderr}")

    for even in (2, 4, 6):
        r = render(f"replicas={even}")
        check(r.returncode != 0 and "1, 3, 5" in r.stderr, f"{even} voters must not render: {r.stderr}")

# Probes hit endpoints the binary really serves.
with tempfile.TemporaryDirectory() as data:
    kafka, rpc, admin = free_port(), free_port(), free_port()
    node = subprocess.Popen([FJORD, "serve", "--data-dir", data, "--listeners", f"PLAINTEXT://127.0.0.1:{kafka}",
                             "--rpc-listener", f"127.0.0.1:{rpc}", "--admin-listener", f"127.0.0.1:{admin}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for path in sorted(probe_paths):
            status = None
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    status = urllib.request.urlopen(f"http://127.0.0.1:{admin}{path}", timeout=2).status
                    break
                except Exception:
                    time.sleep(0.2)  # poll until the node answers, bounded by the deadline
            check(status == 200, f"probe path {path} answers 200 on a ready node (got {status})")
    finally:
        node.kill()
        node.wait()

# The plain manifests are the chart's output, so they cannot drift from it.
render_script = os.path.join(ROOT, "k8s", "render-manifests.sh")
with tempfile.TemporaryDirectory() as out:
    r = run([render_script, out], env={**os.environ, "FJORD_K8S_TOOLS": TOOLS})
    check(r.returncode == 0, f"render-manifests.sh: {r.stderr}")
    d = run(["diff", "-r", os.path.join(ROOT, "k8s", "manifests"), out])
    check(d.returncode == 0, f"k8s/manifests differ from the chart; run k8s/render-manifests.sh:\n{d.stdout}")
    kustomize = [os.path.join(TOOLS, "bin", "kubectl"), "kustomize"]
    for size in (3, 5, 7):
        k = run(kustomize + [os.path.join(ROOT, "k8s", "manifests", "overlays", f"{size}-nodes")])
        check(k.returncode == 0, f"kustomize overlay {size}: {k.stderr}")
        if k.returncode == 0:
            docs = docs_of(k.stdout)
            sts = [d for d in docs if d["kind"] == "StatefulSet"][0]
            check(sts["spec"]["replicas"] == size, f"overlay {size}: {size} replicas")
            cm = [d for d in docs if d["kind"] == "ConfigMap"][0]
            voters = flat(toml_of(cm))["controller.quorum.voters"].split(",")
            check(len(voters) == size, f"overlay {size}: {size} voters")
            path = os.path.join(out, f"overlay-{size}.yaml")
            with open(path, "w") as f:
                f.write(k.stdout)
            v = run([VALIDATE, "--strict", "--quiet", "-k", "1.30.0", path])
            check(v.returncode == 0, f"overlay {size}: kubernetes-validate: {v.stdout}{v.stderr}")

print(f"chart checks: {checks - len(failures)}/{checks} passed over {len(scenarios)} renderings")
sys.exit(1 if failures else 0)
