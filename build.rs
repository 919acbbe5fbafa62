//! Stamps `powa-sentinel --version` with the commit and the build date, so that a bug report
//! from an installed package says which code it is about.
//!
//! The commit comes from `POWA_SENTINEL_COMMIT` if set (a build from a source tarball),
//! else from git, else "unknown". The date follows `SOURCE_DATE_EPOCH` when set, as
//! reproducible Debian builds expect, else today (UTC). Only HEAD and the branch it points
//! to are watched, so a build is redone when the commit changes, not on every file saved.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=POWA_SENTINEL_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    let commit = std::env::var("POWA_SENTINEL_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = Path::new(&dir);
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        if let (Some(branch), Some(common)) = (
            git(&["symbolic-ref", "-q", "HEAD"]),
            git(&["rev-parse", "--git-common-dir"]),
        ) {
            let r = Path::new(&common).join(branch);
            if r.exists() {
                println!("cargo:rerun-if-changed={}", r.display());
            }
            // A path that does not exist would make cargo rerun this on every build.
            let packed = Path::new(&common).join("packed-refs");
            if packed.exists() {
                println!("cargo:rerun-if-changed={}", packed.display());
            }
        }
    }
    let when = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_else(chrono::Utc::now);
    println!("cargo:rustc-env=POWA_SENTINEL_COMMIT={commit}");
    println!(
        "cargo:rustc-env=POWA_SENTINEL_BUILD_DATE={}",
        when.format("%Y-%m-%d")
    );
}
