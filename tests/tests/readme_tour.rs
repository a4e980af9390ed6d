//! Runs the README's five-minute tour against a fresh node and checks the output the
//! README shows, so the README cannot go stale.

use std::process::Command;

use fjord_tests::{fjord_bin, repo_root, Node};

struct Step {
    script: String,
    expected: Vec<String>,
}

fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `sh` blocks between the tour markers, each with the `text` block that follows it.
fn tour_steps(readme: &str) -> Vec<Step> {
    let start = readme
        .find("<!-- tour:start -->")
        .expect("tour start marker");
    let end = readme.find("<!-- tour:end -->").expect("tour end marker");
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = readme[start..end].lines();
    while let Some(line) = lines.next() {
        let lang = match line.trim().strip_prefix("```") {
            Some(l) if !l.is_empty() => l.to_string(),
            _ => continue,
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        match lang.as_str() {
            "sh" => steps.push(Step {
                script: body.join("\n"),
                expected: Vec::new(),
            }),
            "text" => {
                let step = steps.last_mut().expect("a text block follows a sh block");
                step.expected.extend(
                    body.iter()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| normalize(l)),
                );
            }
            other => panic!("unexpected block language {other} in the tour"),
        }
    }
    steps
}

#[test]
fn the_readme_tour_works_as_written() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let steps = tour_steps(&readme);
    assert!(steps.len() >= 4, "the tour has its steps");
    let node = Node::start();
    let bin_dir = fjord_bin().parent().expect("bin dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for step in steps {
        let script = step.script.replace("127.0.0.1:9092", &node.bootstrap());
        let out = Command::new("bash")
            .arg("-euo")
            .arg("pipefail")
            .arg("-c")
            .arg(&script)
            .current_dir(&root)
            .env("PATH", &path)
            .env("FJORD_BOOTSTRAP_SERVER", node.bootstrap())
            .output()
            .expect("run bash");
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "tour step failed:\n{script}\n--- output:\n{output}"
        );
        let got: Vec<String> = output.lines().map(normalize).collect();
        for want in &step.expected {
            assert!(
                got.iter().any(|g| g == want),
                "tour step:\n{script}\nexpected the line {want:?} in:\n{output}"
            );
        }
    }
}
