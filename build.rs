//! Build steps: the commit the module is built from (`nginx_prometheus_build_info`),
//! and the C compiler's layout of the nginx structs the module touches
//! (`src/nginx/bitfield_probe.c`, for `src/nginx/bitfield.rs`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    revision();
    nginx_layout();
}

fn revision() {
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

/// Compiles `bitfield_probe.c` against the configured tree nginx-sys made the bindings
/// from (its include paths and defines reach us as `DEP_NGINX_*`: nginx-sys is a direct
/// dependency for that), runs it, and keeps what it prints as `nginx_layout.rs`.
fn nginx_layout() {
    const PROBE: &str = "src/nginx/bitfield_probe.c";
    println!("cargo:rerun-if-changed={PROBE}");
    for var in [
        "DEP_NGINX_INCLUDE",
        "DEP_NGINX_CFLAGS",
        "DEP_NGINX_METADATA",
        "DEP_NGINX_BUILD_DIR",
        "CC",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let build_dir = PathBuf::from(var("DEP_NGINX_BUILD_DIR"));
    // A reconfigured tree (other modules, other options) can change the layout.
    println!(
        "cargo:rerun-if-changed={}",
        build_dir.join("ngx_auto_config.h").display()
    );
    let out = PathBuf::from(var("OUT_DIR"));
    let exe = out.join("bitfield_probe");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut compile = Command::new(&cc);
    for dir in std::env::split_paths(&var("DEP_NGINX_INCLUDE")) {
        compile.arg("-I").arg(dir);
    }
    // nginx-sys prints its defines with the one-colon syntax (`cargo:metadata=cflags=`),
    // which reaches us as DEP_NGINX_METADATA; both spellings, then, and often empty.
    let cflags = std::env::var("DEP_NGINX_CFLAGS")
        .ok()
        .or_else(|| {
            let m = std::env::var("DEP_NGINX_METADATA").ok()?;
            m.strip_prefix("cflags=").map(str::to_owned)
        })
        .unwrap_or_default();
    compile
        .args(cflags.split_whitespace())
        // `s.field = ~0u` on a narrow bitfield is what the probe means.
        .args(["-Wno-overflow", "-o"])
        .arg(&exe)
        .arg(PROBE);
    let status = compile.status().unwrap_or_else(|e| panic!("{cc}: {e}"));
    assert!(
        status.success(),
        "{PROBE} does not compile against {build_dir:?}"
    );
    let run = Command::new(&exe).output().expect("bitfield_probe runs");
    assert!(
        run.status.success(),
        "bitfield_probe: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::write(out.join("nginx_layout.rs"), run.stdout).expect("nginx_layout.rs written");
}
