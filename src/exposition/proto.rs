//! The messages of the protobuf exposition, `io.prometheus.client` of
//! `proto/metrics.proto` (client_model's), as prost generates them.
//!
//! The generated code is checked in (`proto/io.prometheus.client.rs`) rather than made
//! by build.rs: the module then builds without `protoc` and without prost-build's
//! dependencies, and a change of the code is a reviewed diff. A test makes it again
//! with `protoc` and prost-build and compares.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated {
    include!("proto/io.prometheus.client.rs");
}

pub use generated::*;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Fails when the checked-in code is not what protoc and prost-build make of
    /// `proto/metrics.proto`; with `PROTO_REGENERATE=1`, writes it instead.
    #[test]
    fn generated_code_is_what_protoc_makes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = std::env::temp_dir().join(format!("ngx-prom-proto-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        prost_build::Config::new()
            .out_dir(&out)
            .compile_protos(&[root.join("proto/metrics.proto")], &[root.join("proto")])
            .expect("protoc (Debian protobuf-compiler) and prost-build");
        let made = std::fs::read_to_string(out.join("io.prometheus.client.rs")).unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        let ours = root.join("src/exposition/proto/io.prometheus.client.rs");
        if std::env::var_os("PROTO_REGENERATE").is_some() {
            std::fs::write(&ours, &made).unwrap();
        }
        assert!(
            std::fs::read_to_string(&ours).unwrap() == made,
            "{} is not what protoc and prost-build make of proto/metrics.proto: \
             regenerate it (see proto/README.md)",
            ours.display()
        );
    }
}
