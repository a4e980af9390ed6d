#!/usr/bin/env python3
"""Proves the Helm chart without a Kubernetes cluster.

For 1, 3, 5 and 7 voters (plus a learner), with external access off, NodePort and
LoadBalancer: `helm lint --strict`, `helm template`, and `kubernetes-validate --strict`
against Kubernetes 1.30 and the newest version the validator ships. Then, over the rendered
YAML: the voter list matches the pod DNS names, the PDB allows at most one unavailable pod,
advertised listeners and rpc addresses are per pod (pods beyond the voters too), probes use
endpoints the binary serves, and the config every pod gets is accepted by `fjord serve
--check-config`. Even voter counts, fewer pods than voters and the removed `learners` must
fail. With TLS, SASL and ACLs on: every listener's protocol, the Secrets mounted where the
config points (the config is checked against certificates made by deploy/gen-certs.sh),
and a NetworkPolicy that lets only the release's pods reach the rpc port.
Defaults fit one small node: soft pod anti-affinity, and requests of 3 (and 5) pods fit
a 2-CPU node beside Kubernetes' own pods. Changing `replicas` restarts no running pod.
Upgrades of a running release (a fake Kubernetes API answers the chart's `lookup`s): fewer
pods and another voter count are refused without their confirmation, with the steps to
take; confirmed, they render. k8s/scale.sh (against stub kubectl and helm) refuses to
shrink while a departing broker keeps a replica, and confirms the drain when none does.
shellcheck passes on k8s/*.sh.
Plain manifests under k8s/manifests must match what the chart renders.

usage: check_chart.py TOOLS_DIR FJORD_BIN
"""
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


def render(*sets, extra=(), env=None):
    args = [HELM, "template", "fjord", CHART, "--namespace", NAMESPACE, *extra]
    for s in sets:
        args += ["--set", s]
    return run(args, env=env)


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
        scenarios.append((voters, learners, "off", [f"replicas={voters + learners}", f"voters={voters}"]))
    scenarios.append((voters, 0, "NodePort", [f"replicas={voters}", f"voters={voters}", "externalAccess.enabled=true",
                                               "externalAccess.nodePort.host=kafka.example.com"]))
    addrs = "{" + ",".join(f"lb-{i}.example.com" for i in range(voters)) + "}"
    scenarios.append((voters, 0, "LoadBalancer", [f"replicas={voters}", f"voters={voters}", "externalAccess.enabled=true",
                                                   "externalAccess.type=LoadBalancer",
                                                   f"externalAccess.loadBalancer.addresses={addrs}"]))
# The defaults, and `helm upgrade --set replicas=5` on them: two learners beyond 3 voters.
scenarios.append((3, 0, "off", []))
scenarios.append((3, 2, "off", ["replicas=5"]))
scenarios.append((3, 2, "NodePort", ["replicas=5", "externalAccess.enabled=true",
                                     "externalAccess.nodePort.host=kafka.example.com"]))

SECURE = ["tls.enabled=true", "tls.secretName=fjord-tls", "sasl.enabled=true",
          "sasl.usersSecret=fjord-users", "authorization.enabled=true"]
scenarios.append((3, 0, "LoadBalancer", [
    "replicas=3", "externalAccess.enabled=true", "externalAccess.type=LoadBalancer",
    "externalAccess.loadBalancer.addresses={lb-0.example.com,lb-1.example.com,lb-2.example.com}",
    *SECURE]))
scenarios.append((3, 0, "off", ["tls.enabled=true", "tls.secretName=fjord-tls", "tls.clientAuth=required"]))
scenarios.append((3, 1, "off", ["replicas=4", "sasl.enabled=true", "sasl.usersSecret=fjord-users", "networkPolicy.enabled=false",
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
        # Every pod, voter or learner, advertises its pod DNS name as its rpc address: a
        # learner's bare hostname (fjord-3:9093) resolves nowhere but in its own pod.
        for i in range(pods):
            rpc = config.get(f"node.{i}.rpc.advertised.listener")
            check(rpc == f"{pod_dns[i]}:9093",
                  f"{name}: pod {i} ({'voter' if i < voters else 'learner'}) advertises rpc address {rpc}")
        # Those names resolve: the headless Service selects the pods and publishes them
        # before they are ready, and the StatefulSet names its pods under it.
        check(headless[0]["spec"]["selector"] == spec_selector(by_kind)
              and {p["name"]: p["port"] for p in headless[0]["spec"]["ports"]}.get("rpc") == 9093,
              f"{name}: the headless Service selects the pods and carries the rpc port")
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
        # The pods get the cluster secret from the chart's Secret (or the operator's).
        env = {e["name"]: e for e in container.get("env", [])}
        ref = env.get("FJORD_CLUSTER_SECRET", {}).get("valueFrom", {}).get("secretKeyRef", {})
        secrets = {d["metadata"]["name"]: d for d in by_kind.get("Secret", [])}
        check(ref.get("name") in secrets and ref.get("key") in secrets[ref["name"]].get("data", {}),
              f"{name}: pods take FJORD_CLUSTER_SECRET from the rendered Secret: {ref}")
        secret = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode() if ref.get("name") in secrets else ""
        check(len(secret) >= 32, f"{name}: the cluster secret is long and random")
        if "rpc.ssl." not in by_kind["ConfigMap"][0]["data"]["fjord.toml"]:
            bare = run([FJORD, "serve", "--check-config", "--config", cfg],
                       env={k: v for k, v in {**os.environ, "FJORD_NODE_ID": "0"}.items()
                            if not k.startswith("FJORD_CLUSTER_SECRET")})
            check(bare.returncode != 0 and "rpc listener" in bare.stderr,
                  f"{name}: without the secret (or mutual TLS) a pod refuses to start: {bare.stderr}")
        for i in range(pods):
            c = run([FJORD, "serve", "--check-config", "--config", cfg],
                    env={**os.environ, "FJORD_NODE_ID": str(i), "FJORD_CLUSTER_SECRET": secret})
            check(c.returncode == 0, f"{name}: pod {i} config refused: {c.stderr}")
            check("unknown property" not in c.stdout, f"{name}: pod {i} config has unknown keys: {c.stdout}")
            check(f"advertised.listeners = INTERNAL://{pod_dns[i]}:9092" in c.stdout,
                  f"{name}: pod {i} resolves its own advertised listener: {c.stdout}")
            check(f"rpc.advertised.listener = {pod_dns[i]}:9093\n" in c.stdout,
                  f"{name}: pod {i} resolves its own rpc address (not a bare hostname): {c.stdout}")

    for sets, why in ((["tls.enabled=true"], "tls.secretName"), (["sasl.enabled=true"], "sasl.usersSecret"),
                      (["tls.enabled=true", "tls.secretName=x", "tls.clientAuth=maybe"], "clientAuth")):
        r = render(*sets)
        check(r.returncode != 0 and why in r.stderr, f"{sets} must not render (about {why}): {r.stderr}")

    for even in (2, 4, 6):
        r = render("replicas=7", f"voters={even}")
        check(r.returncode != 0 and "1, 3, 5" in r.stderr, f"{even} voters must not render: {r.stderr}")
    r = render("replicas=4")
    check(r.returncode == 0, f"4 pods (3 voters and a learner) render: {r.stderr}")
    for sets, why in ((["replicas=1"], "at least voters"), (["replicas=3", "voters=5"], "at least voters"),
                      (["replicas=0"], "replicas"), (["learners=2"], "replicas=5 voters=3"),
                      (["voters=null"], "voters is not set")):
        r = render(*sets)
        check(r.returncode != 0 and why in r.stderr, f"{sets} must not render (about {why}): {r.stderr}")

# The defaults schedule on one small node: soft anti-affinity (hard only when asked), and
# the requests of 3 pods, and of 5 while scaling, fit a 2-CPU, 4 GiB node beside what
# Kubernetes' own pods request there (a kubeadm control plane and CoreDNS: 950m, 600 MiB).
NODE_CPU_M, NODE_MEM = 2000 - 950, (4 << 30) - (600 << 20)


def cpu_m(q):
    return int(float(q[:-1])) if str(q).endswith("m") else int(float(q) * 1000)


def mem_bytes(q):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 1000, "M": 10**6, "G": 10**9}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    return int(float(m.group(1)) * units.get(m.group(2), 1))


def statefulset(text):
    return [d for d in docs_of(text) if d["kind"] == "StatefulSet"][0]


for pods in (3, 5):
    r = render(f"replicas={pods}")
    check(r.returncode == 0, f"defaults with {pods} pods render: {r.stderr}")
    if r.returncode != 0:
        continue
    pod_spec = statefulset(r.stdout)["spec"]["template"]["spec"]
    anti = pod_spec.get("affinity", {}).get("podAntiAffinity", {})
    check("requiredDuringSchedulingIgnoredDuringExecution" not in anti
          and anti.get("preferredDuringSchedulingIgnoredDuringExecution"),
          f"defaults, {pods} pods: pod anti-affinity is a preference, so pods may share a node: {anti}")
    spread = pod_spec.get("topologySpreadConstraints", [])
    check(all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in spread),
          f"defaults, {pods} pods: zone spreading is a preference too: {spread}")
    requests = pod_spec["containers"][0]["resources"]["requests"]
    cpu, mem = pods * cpu_m(requests["cpu"]), pods * mem_bytes(requests["memory"])
    check(cpu <= NODE_CPU_M and mem <= NODE_MEM,
          f"defaults, {pods} pods request {cpu}m CPU and {mem >> 20} MiB: more than one 2-CPU node "
          f"has beside Kubernetes' own pods ({NODE_CPU_M}m, {NODE_MEM >> 20} MiB)")
r = render("podAntiAffinity=hard")
if r.returncode == 0:
    anti = statefulset(r.stdout)["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    check(anti.get("requiredDuringSchedulingIgnoredDuringExecution", [{}])[0].get("topologyKey")
          == "kubernetes.io/hostname", f"podAntiAffinity=hard: one pod per node: {anti}")
else:
    check(False, f"podAntiAffinity=hard renders: {r.stderr}")


# Adding or removing learner pods restarts no running pod (the pod template is unchanged),
# while a change a running pod reads (voters, config) does.
def template_checksum(*sets):
    r = render(*sets)
    if r.returncode != 0:
        return f"render failed: {r.stderr}"
    return statefulset(r.stdout)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


base_sum = template_checksum()
check(template_checksum("replicas=5") == base_sum == template_checksum("replicas=4"),
      "changing replicas (learner pods only) leaves the pod template alone, so no running pod restarts")
check(template_checksum("replicas=5", "voters=5") != base_sum, "another voter list restarts the pods")
check(template_checksum("config.log\\.retention\\.hours=1") != base_sum, "a config change restarts the pods")


class FakeKubernetes:
    """Just enough of the Kubernetes API for `helm template --dry-run=server`: discovery,
    and GET of the release's StatefulSet and ConfigMap (what the chart's `lookup`s read)."""

    RESOURCES = {
        "v1": [("configmaps", "ConfigMap"), ("services", "Service"), ("secrets", "Secret")],
        "apps/v1": [("statefulsets", "StatefulSet")],
        "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget")],
        "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy")],
    }

    def __init__(self):
        self.objects = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = fake.answer(self.path.split("?")[0])
                data = json.dumps(body or {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                           "reason": "NotFound", "code": 404}).encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path):
        groups = [g for g in self.RESOURCES if "/" in g]
        if path == "/version":
            return {"major": "1", "minor": "30", "gitVersion": "v1.30.0"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g.split("/")[0], "versions": [{"groupVersion": g, "version": "v1"}],
                 "preferredVersion": {"groupVersion": g, "version": "v1"}} for g in groups]}
        for gv, kinds in self.RESOURCES.items():
            if path == ("/api/v1" if gv == "v1" else f"/apis/{gv}"):
                return {"kind": "APIResourceList", "groupVersion": gv, "resources": [
                    {"name": n, "singularName": k.lower(), "namespaced": True, "kind": k, "verbs": ["get"]}
                    for n, k in kinds]}
        return self.objects.get(path)

    def running(self, pods, voters, generation=7):
        """A release made by this chart with `pods` and `voters`, its StatefulSet at
        `generation`."""
        r = render(f"replicas={pods}", f"voters={voters}")
        docs = {d["kind"]: d for d in docs_of(r.stdout)}
        sts, cm, secret = docs["StatefulSet"], docs["ConfigMap"], docs["Secret"]
        sts["metadata"]["generation"] = generation
        self.objects = {
            f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/fjord": sts,
            f"/api/v1/namespaces/{NAMESPACE}/configmaps/fjord": cm,
            f"/api/v1/namespaces/{NAMESPACE}/secrets/fjord-cluster-secret": secret,
        }

    def kubeconfig(self, path):
        with open(path, "w") as f:
            yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                            "clusters": [{"name": "fake", "cluster": {
                                "server": f"http://127.0.0.1:{self.server.server_address[1]}"}}],
                            "users": [{"name": "fake", "user": {}}],
                            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}, f)


with tempfile.TemporaryDirectory() as home:
    api = FakeKubernetes()
    api.kubeconfig(os.path.join(home, "kubeconfig"))
    # HOME keeps helm's and client-go's caches of the fake cluster out of the user's.
    env = {**os.environ, "KUBECONFIG": os.path.join(home, "kubeconfig"), "HOME": home}
    live = ["--dry-run=server", "--disable-openapi-validation", "--is-upgrade"]

    def upgrade(*sets):
        return render(*sets, extra=live, env=env)

    def pods_and_voters(r):
        docs = docs_of(r.stdout)
        cm = [d for d in docs if d["kind"] == "ConfigMap"][0]
        voter_list = flat(toml_of(cm))["controller.quorum.voters"].split(",")
        return statefulset(r.stdout)["spec"]["replicas"], len(voter_list)

    r = upgrade("replicas=5")
    check(r.returncode == 0 and pods_and_voters(r) == (5, 3),
          f"a fresh install (nothing running) renders against a cluster: {r.stderr}")

    api.running(3, 3)
    r = upgrade("replicas=5")
    check(r.returncode == 0 and pods_and_voters(r) == (5, 3),
          f"running 3 pods: `--set replicas=5` adds two learner pods: {r.stderr}")
    if r.returncode == 0:
        check(statefulset(r.stdout)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
              == api.objects[f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/fjord"]["spec"]["template"]
              ["metadata"]["annotations"]["checksum/config"], "running 3 pods: growing to 5 restarts none")
    r = upgrade("replicas=5", "voters=5", "confirm.voters=7")
    check(r.returncode != 0 and "only 3 pods exist" in r.stderr and "replicas=5" in r.stderr,
          f"running 3 pods: voters=5 is refused until pods 3 and 4 exist: {r.stderr}")
    r = upgrade("clusterDomain=example.org")
    check(r.returncode != 0 and "addresses" in r.stderr,
          f"running: a change of the voters' addresses is refused: {r.stderr}")

    api.running(5, 3)
    r = upgrade("replicas=3")
    check(r.returncode != 0 and "fjord-3, fjord-4" in r.stderr and f"k8s/scale.sh fjord {NAMESPACE} 3" in r.stderr
          and "confirm.drained=7" in r.stderr,
          f"running 5 pods: `--set replicas=3` is refused until brokers 3 and 4 are drained: {r.stderr}")
    r = upgrade("replicas=3", "confirm.drained=6")
    check(r.returncode != 0 and "confirm.drained=7" in r.stderr,
          f"running 5 pods: a stale drain confirmation (an older generation) is refused: {r.stderr}")
    r = upgrade("replicas=3", "confirm.drained=7")
    check(r.returncode == 0 and pods_and_voters(r) == (3, 3),
          f"running 5 pods: replicas=3 with the drain confirmed renders 3 pods: {r.stderr}")
    r = upgrade("replicas=5", "voters=5")
    check(r.returncode != 0 and "add-voter 3 --force --admin-server" in r.stderr
          and "add-voter 4 --admin-server" in r.stderr and "confirm.voters=7" in r.stderr,
          f"running 5 pods, 3 voters: voters=5 is refused and names the add-voter steps: {r.stderr}")
    r = upgrade("replicas=5", "voters=5", "confirm.voters=7")
    check(r.returncode == 0 and pods_and_voters(r) == (5, 5),
          f"running 5 pods, 3 voters: voters=5 confirmed renders 5 voters: {r.stderr}")

    api.running(5, 5)
    r = upgrade("replicas=5", "voters=3")
    check(r.returncode != 0 and "remove-voter 4 --force --admin-server" in r.stderr
          and "remove-voter 3 --admin-server" in r.stderr,
          f"running 5 voters: voters=3 is refused and names the remove-voter steps: {r.stderr}")
    r = upgrade("replicas=3", "voters=3", "confirm.voters=7")
    check(r.returncode != 0 and "confirm.drained=7" in r.stderr,
          f"running 5 voters: dropping voter pods still needs the drain: {r.stderr}")
    r = upgrade("replicas=5", "voters=5")
    check(r.returncode == 0 and pods_and_voters(r) == (5, 5), f"running 5 voters: an unchanged upgrade renders: {r.stderr}")
    # Every revision's pods share one cluster secret: an upgrade keeps the running one.
    running = api.objects[f"/api/v1/namespaces/{NAMESPACE}/secrets/fjord-cluster-secret"]["data"]
    rendered = [d for d in docs_of(r.stdout) if d["kind"] == "Secret"]
    check(len(rendered) == 1 and rendered[0]["data"] == running,
          "an upgrade keeps the running cluster secret")
    api.server.shutdown()


# k8s/scale.sh against stub kubectl and helm: a shrink that leaves a replica on a departing
# broker fails before removing any pod; a clean one confirms the drain to the chart.
STUB = r'''#!/usr/bin/env python3
import json, os, sys
state_path = os.environ["STUB_STATE"]
state = json.load(open(state_path))
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(state_path + ".log", "a") as log:
    log.write(tool + " " + " ".join(args) + "\n")
def save():
    json.dump(state, open(state_path, "w"))
def jsonpath(path):
    return {"{.items[0].metadata.name}": "fjord", "{.spec.replicas}": state["replicas"],
            "{.spec.serviceName}": "fjord-headless", "{.metadata.generation}": state["generation"]}[path]
if tool == "helm":
    if args[:2] == ["upgrade", "--help"]:
        print("      --reset-then-reuse-values   when upgrading, reset the values ...")
    elif args[:2] == ["get", "values"]:
        print(json.dumps({"voters": state["voters"], "ports": {"kafka": 9092, "admin": 9644, "rpc": 9093}}))
    elif args[0] == "upgrade":
        sets = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))
        state["replicas"] = int(sets.get("replicas", state["replicas"]))
        state["generation"] += 1
        save()
    sys.exit(0)
if "exec" in args:
    cmd = args[args.index("--") + 2:]
    if "--help" in cmd:  # the fjord CLI with drain state: drain takes --admin-server
        print("undrain" if cmd == ["cluster", "--help"] else "--admin-server <ADMIN_SERVER>")
    elif cmd[:2] == ["cluster", "status"]:
        brokers = [{"id": i, "fenced": False, "rpc_address": f"fjord-{i}.fjord-headless.ns.svc.cluster.local:9093"}
                   for i in range(state["replicas"])]
        print(json.dumps({"brokers": brokers, "under_replicated_partitions": [], "topics": [
            {"name": "t", "partitions": [{"partition": i, "replicas": r} for i, r in enumerate(state["placement"])]}]}))
    elif cmd[:2] == ["cluster", "drain"]:
        broker = int(cmd[2])
        if broker not in state.get("sticky", []):
            state["placement"] = [[b for b in r if b != broker] for r in state["placement"]]
            save()
    sys.exit(0)
if "get" in args and "pod" in args:
    sys.exit(0 if int(args[-1].rsplit("-", 1)[1]) < state["replicas"] else 1)
if "get" in args and "--output" in args:
    print(jsonpath(args[args.index("--output") + 1].split("=", 1)[1]))
sys.exit(0)
'''

with tempfile.TemporaryDirectory() as stubs:
    for tool in ("kubectl", "helm"):
        with open(os.path.join(stubs, tool), "w") as f:
            f.write(STUB)
        os.chmod(os.path.join(stubs, tool), 0o755)
    with open(os.path.join(stubs, "sleep"), "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(os.path.join(stubs, "sleep"), 0o755)
    state_path = os.path.join(stubs, "state.json")
    scale = os.path.join(ROOT, "k8s", "scale.sh")

    def scale_run(wanted, **state):
        with open(state_path, "w") as f:
            json.dump({"replicas": 5, "voters": 3, "generation": 7, **state}, f)
        if os.path.exists(state_path + ".log"):
            os.remove(state_path + ".log")
        r = run([scale, "fjord", "ns", str(wanted)],
                env={**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUB_STATE": state_path}, timeout=120)
        with open(state_path + ".log") as f:
            calls = f.read()
        return r, calls

    placement = [[0, 1, 3], [1, 2, 4], [2, 0, 1], [4, 3, 0]]
    r, calls = scale_run(3, placement=placement, sticky=[4])
    upgrades = [c for c in calls.splitlines() if c.startswith("helm upgrade fjord")]
    check(r.returncode != 0 and "t-1" in r.stderr and not upgrades,
          f"scale.sh 5 -> 3 with a replica left on broker 4 fails and removes no pod: rc {r.returncode}, "
          f"{r.stdout}{r.stderr}, upgrades {upgrades}")
    r, calls = scale_run(3, placement=placement)
    upgrades = [c for c in calls.splitlines() if c.startswith("helm upgrade fjord")]
    check(r.returncode == 0 and len(upgrades) == 1 and "replicas=3" in upgrades[0]
          and "confirm.drained=7" in upgrades[0] and "--reset-then-reuse-values" in upgrades[0],
          f"scale.sh 5 -> 3 drains 4 and 3, then upgrades with the drain confirmed: rc {r.returncode}, "
          f"{r.stdout}{r.stderr}, upgrades {upgrades}")
    check(calls.index("cluster drain 4") < calls.index("cluster drain 3") < calls.index("helm upgrade fjord"),
          "scale.sh drains the highest ordinal first, and both before the upgrade")
    drains = [c for c in calls.splitlines() if "cluster drain 3" in c or "cluster drain 4" in c]
    check(all("--wait" in c and "--admin-server 127.0.0.1:9644" in c for c in drains),
          f"scale.sh drains with --wait, and the admin port where drain records the state: {drains}")
    r, calls = scale_run(2, placement=placement)
    check(r.returncode != 0 and "voters" in r.stderr and "helm upgrade fjord" not in calls,
          f"scale.sh refuses to remove voter pods: {r.stderr}")
    r, calls = scale_run(5, replicas=3, placement=[[0, 1, 2]])
    check(r.returncode == 0 and "replicas=5" in calls and "cluster balance --execute --wait" in calls
          and calls.index("cluster undrain 4") < calls.index("cluster balance"),
          f"scale.sh 3 -> 5 adds the pods, checks them, undrains their ids and balances: rc {r.returncode}, "
          f"{r.stdout}{r.stderr}")

# The scripts are shellcheck-clean.
scripts = sorted(os.path.join(ROOT, "k8s", f) for f in os.listdir(os.path.join(ROOT, "k8s")) if f.endswith(".sh"))
sc = run([os.path.join(TOOLS, "venv", "bin", "shellcheck"), *scripts])
check(sc.returncode == 0, f"shellcheck k8s/*.sh:\n{sc.stdout}{sc.stderr}")

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
