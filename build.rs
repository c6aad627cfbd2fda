//! Records the commit the module is built from, for `nginx_prometheus_build_info`.

fn main() {
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(rev) = rev.filter(|r| !r.is_empty()) {
        println!("cargo:rustc-env=NGX_PROMETHEUS_REVISION={rev}");
    }
    // A new commit moves a ref (git renames files into refs/heads) or HEAD itself.
    for path in [".git/HEAD", ".git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
