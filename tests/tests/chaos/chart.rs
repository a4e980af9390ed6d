//! The Helm chart's own config for the chaos schedule that runs it: rendered with the
//! real helm binary, and the TLS and SASL files its pods mount.

use fjord_tests::docker::client_ip;

/// helm from k8s/tools.sh, or why the chart schedule cannot run.
pub fn helm() -> Option<std::path::PathBuf> {
    let tools = std::env::var("FJORD_K8S_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| fjord_tests::repo_root().join("k8s/.tools"));
    let helm = tools.join("bin/helm");
    if helm.exists() {
        return Some(helm);
    }
    if std::env::var("FJORD_REQUIRE_DOCKER").is_ok_and(|v| v == "1") {
        panic!("helm is missing at {}: run k8s/tools.sh", helm.display());
    }
    eprintln!("SKIPPED: the chart schedule needs helm: run k8s/tools.sh");
    None
}

/// The `fjord.toml` the chart's ConfigMap gives every pod of a release of `pods` replicas,
/// with each pod's external listener advertised at its client-network address, and `sets`
/// more chart values.
pub fn chart_config(
    helm: &std::path::Path,
    client_prefix: &str,
    pods: usize,
    sets: &[&str],
) -> String {
    let addresses = (0..pods)
        .map(|i| client_ip(client_prefix, i))
        .collect::<Vec<_>>()
        .join(",");
    let out = std::process::Command::new(helm)
        .args(["template", "fjord"])
        .arg(fjord_tests::repo_root().join("k8s/helm/fjord"))
        .args(["--show-only", "templates/configmap.yaml"])
        .arg("--set")
        .arg(format!("replicas={pods}"))
        .args([
            "--set",
            "externalAccess.enabled=true",
            "--set",
            "externalAccess.type=LoadBalancer",
        ])
        .arg("--set")
        .arg(format!(
            "externalAccess.loadBalancer.addresses={{{addresses}}}"
        ))
        .args(sets.iter().flat_map(|s| ["--set", s]))
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout);
    // The ConfigMap's one key is a block scalar indented by four spaces.
    yaml.lines()
        .skip_while(|l| !l.trim_start().starts_with("fjord.toml: |"))
        .skip(1)
        .map(|l| l.strip_prefix("    ").unwrap_or(l.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The chart's security on: SASL_SSL listeners, mutual TLS between pods, ACLs. The pods
/// get a keystore valid for their DNS names and client addresses, and an admin user, as
/// the chart's Secrets would give them; every client of the run logs in as that admin.
pub struct ChartSecurity {
    certs: fjord_tests::certs::Certs,
    users: tempfile::TempDir,
}

impl ChartSecurity {
    pub const SETS: &'static [&'static str] = &[
        "tls.enabled=true",
        "tls.secretName=fjord-tls",
        "sasl.enabled=true",
        "sasl.usersSecret=fjord-users",
        "authorization.enabled=true",
    ];

    pub fn new() -> ChartSecurity {
        let users = tempfile::tempdir().expect("users dir");
        std::fs::write(users.path().join("users"), "admin:admin-secret\n").expect("users");
        fjord_tests::docker::readable_by_the_image_user(users.path());
        let certs = fjord_tests::certs::Certs::new();
        fjord_tests::docker::readable_by_the_image_user(certs.dir());
        ChartSecurity { certs, users }
    }

    /// The pods' files for a cluster whose clients use `client_prefix`, and the clients'
    /// settings registered for its addresses.
    pub fn for_cluster(
        &self,
        client_prefix: &str,
        client_port: u16,
    ) -> Vec<(std::path::PathBuf, String)> {
        let ips: Vec<String> = (0..3).map(|i| client_ip(client_prefix, i)).collect();
        let mut sans = vec![
            "DNS:*.fjord-headless.default.svc.cluster.local".to_string(),
            "DNS:fjord.default.svc.cluster.local".to_string(),
        ];
        sans.extend(ips.iter().map(|ip| format!("IP:{ip}")));
        let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
        let keystore = self.certs.issue("keystore", &sans);
        // gen-certs.sh keeps keys to their owner (0600); Kubernetes mounts a Secret
        // readable by the pod's fsGroup, which for this bind mount means by uid 10001.
        {
            use std::os::unix::fs::PermissionsExt;
            for file in [keystore, self.certs.path("keystore.key")] {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
                    .expect("the keystore is readable in the container");
            }
        }
        let bootstrap = ips
            .iter()
            .map(|ip| format!("{ip}:{client_port}"))
            .collect::<Vec<_>>()
            .join(",");
        let ca = self.certs.ca().display().to_string();
        fjord_tests::register_client_security(
            &bootstrap,
            &[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "admin"),
                ("sasl.password", "admin-secret"),
                ("ssl.ca.location", &ca),
            ],
        );
        vec![
            (self.certs.dir().to_path_buf(), "/etc/fjord-tls".into()),
            (self.users.path().to_path_buf(), "/etc/fjord-sasl".into()),
        ]
    }
}
