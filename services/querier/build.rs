//! Build information for `/api/v1/status/buildinfo`: the git revision and
//! branch of the checkout, the compiler's version and the build date, as
//! environment variables of the compilation. Anything that cannot be found
//! (no git, a source tarball) is left empty rather than failing the build.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Unix seconds as Prometheus writes its build date: `20060102-15:04:05` (UTC).
fn build_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01, in 400-year eras from March 1st.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

fn main() {
    // Rebuilt when the checkout moves to another commit or branch.
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
    let revision = output("git", &["rev-parse", "HEAD"]);
    let branch = output("git", &["rev-parse", "--abbrev-ref", "HEAD"]);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rust_version = output(&rustc, &["--version"]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    println!("cargo:rustc-env=STRATA_BUILD_REVISION={revision}");
    println!("cargo:rustc-env=STRATA_BUILD_BRANCH={branch}");
    println!("cargo:rustc-env=STRATA_BUILD_RUST_VERSION={rust_version}");
    println!("cargo:rustc-env=STRATA_BUILD_DATE={}", build_date(now));
}
